"""``i2i cyclegan train --help`` shows the defaults that run: every flag's [default: ...] is compared with the
config ``run_config`` builds (the one the command trains), for builtin:shapes and for an image folder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.methods import get_method
from i2i.cyclegan.run_config import run_config
from i2i.options import declared, value_at


def help_rows(*args: str) -> dict[str, str]:
    """flag -> its help row (all names of a flag map to the same row)."""
    res = CliRunner().invoke(app, ["cyclegan", "train", *args, "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    rows = {}
    for line in res.output.splitlines():
        if line.startswith("│ --"):
            for name in line.split()[1].split(","):
                rows[name] = line
    return rows


def expected_flags(model: str) -> dict[str, list[tuple[str, ...]]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for prefix, cls in (((), TrainConfig), (("options",), get_method(model).Options)):
        for d in declared(cls):
            out.setdefault(d.flag, []).append((*prefix, *d.path))
    return out


def shown(config, flag: str, paths: list[tuple[str, ...]]) -> str | None:
    def fmt(value):
        if isinstance(value, bool):
            return flag if value else "--no-" + flag[2:]
        return str(value)

    values = [value_at(config, p) for p in paths]
    if all(v == values[0] for v in values):
        return None if values[0] is None else fmt(values[0])
    return ", ".join(f"{p[-2]}: {fmt(v)}" for p, v in zip(paths, values))


@pytest.mark.parametrize("model", [None, "cut", "fastcut"])
def test_every_shown_default_is_the_config_that_runs(model):
    args = ["--model", model] if model else []
    rows = help_rows(*args)
    on_shapes, on_folder = run_config(model=model), run_config("data/horse2zebra", model=model)
    flags = expected_flags(on_shapes.model)
    assert len(flags) > 40
    for flag, paths in flags.items():
        row = rows[flag]
        a, b = shown(on_shapes, flag, paths), shown(on_folder, flag, paths)
        if flag == "--shapes-count":                 # image folders do not use it: only the preset's is shown
            b = a
        if a == b:
            assert (f"[default: {a}]" in row) if a is not None else "[default:" not in row, row
        else:
            assert f"[default: {a or 'none'} from the shapes preset; {b or 'none'} for image folders]" in row, row
    text = "\n".join(rows.values())
    assert "(default" not in text                                        # no hand-written default left


def test_method_flags_follow_the_model_and_the_resumed_run(tmp_path):
    assert "--lambda-a" in help_rows() and "--lambda-nce" not in help_rows()
    assert "--lambda-nce" in help_rows("--model", "cut") and "--lambda-a" not in help_rows("--model", "cut")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(run_config(model="fastcut", run_dir=str(run)).to_dict()))
    rows = help_rows("--run-dir", str(run), "--resume")                  # the run's own method
    assert "--lambda-nce" in rows and "--lambda-a" not in rows
    assert "[default: 4.0 from the shapes preset; 10.0 for image folders]" in rows["--lambda-nce"]


def test_the_defaults_shown_are_what_trains(tmp_path):
    """No flag given: the saved config is run_config's (the one the help was compared with)."""
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["cyclegan", "train", "--run-dir", str(run), "--max-iters", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "config.json").read_text())
    assert saved == run_config(run_dir=str(run), max_iters=1).to_dict()
    assert saved["options"] == {"lambda_A": 5.0, "lambda_B": 5.0, "lambda_identity": 4.0, "pool_size": 50}
