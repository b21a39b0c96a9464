"""The config a training run starts from (i2i.cyclegan.run_config): the CLI's defaults and naming for Python
callers, resume rules, and --option NAME=VALUE for any method option."""

import json

import pytest
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.cyclegan.config import SHAPES_PRESET
from i2i.cyclegan.run_config import default_run_dir, parse_options, run_config
from i2i.errors import CheckpointError, UsageError


def test_defaults_are_the_clis():
    c = run_config()
    assert (c.dataroot, c.run_dir, c.model) == ("builtin:shapes", "runs/shapes", "cyclegan")
    assert c.lr == SHAPES_PRESET["lr"] and c.generator == SHAPES_PRESET["generator"]
    folder = run_config("data/horse2zebra/", model="cut", lr=1e-4, options={"num_patches": 64})
    assert folder.run_dir == "runs/horse2zebra-cut" == default_run_dir("data/horse2zebra", "cut")
    assert run_config("data/horse2zebra").run_dir == "runs/horse2zebra"
    assert folder.load_size == 286 and folder.lr == 1e-4            # the reference's, not the shapes preset
    assert folder.options["num_patches"] == 64 and folder.options["lambda_nce"] == 1.0
    fast = run_config(model="fastcut", generator={"ngf": 8})
    assert fast.generator.arch == "resnet_3blocks" and fast.run_dir == "runs/shapes-fastcut"


def test_resume_starts_from_the_saved_config(tmp_path):
    with pytest.raises(UsageError, match="--run-dir"):
        run_config(resume=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run_config(run_dir=str(tmp_path), resume=True)
    saved = run_config(run_dir=str(tmp_path), model="fastcut", max_iters=5)
    (tmp_path / "config.json").write_text(json.dumps(saved.to_dict()))
    again = run_config(run_dir=str(tmp_path), resume=True, max_iters=9)
    assert again.model == "fastcut" and again.max_iters == 9
    with pytest.raises(UsageError, match="cannot change --lr"):
        run_config(run_dir=str(tmp_path), resume=True, lr=0.1)
    with pytest.raises(UsageError, match="differs from the run's recorded"):
        run_config("elsewhere", run_dir=str(tmp_path), resume=True)


def test_parse_options_reads_each_value_as_its_defaults_type():
    opts = parse_options("cut", ["lambda_nce=4", "num-patches=64", "--nce-idt=off", "nce_layers=0,4"])
    assert opts == {"lambda_nce": 4.0, "num_patches": 64, "nce_idt": False, "nce_layers": "0,4"}
    assert isinstance(opts["lambda_nce"], float)
    python = run_config(model="cut", options={"lambda_nce": 2}).options["lambda_nce"]     # an int from Python
    assert python == 2.0 and isinstance(python, float)                                  # is saved as the flag's
    assert run_config(model="cut", option_pairs=["num_patches=8"]).options["num_patches"] == 8
    assert run_config(model="cut", option_pairs=["num_patches=8"], options={"num_patches": 8}).options[
        "num_patches"] == 8                                               # a flag and --option may agree
    with pytest.raises(UsageError, match="--option num_patches=8 and the flag's 16 disagree"):
        run_config(model="cut", option_pairs=["num_patches=8"], options={"num_patches": 16})
    for bad, message in (("lambda_nce", "NAME=VALUE"), ("lambda=4", "not an option of --model cut"),
                         ("num_patches=many", "expected an integer"), ("nce_idt=maybe", "true or false")):
        with pytest.raises(UsageError, match=message):
            parse_options("cut", [bad])


def test_cli_option_flag_reaches_the_run(tmp_path):
    run_dir = tmp_path / "run"
    args = ["cyclegan", "train", "--model", "fastcut", "--run-dir", str(run_dir), "--max-iters", "1", "--quiet",
            "--shapes-count", "8", "--ngf", "8", "--ndf", "8", "--option", "num_patches=16",
            "--option", "nce_all_negatives=true", "--lambda-nce", "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    options = json.loads((run_dir / "config.json").read_text())["options"]
    assert (options["num_patches"], options["nce_all_negatives"], options["lambda_nce"]) == (16, True, 3.0)
    res = CliRunner().invoke(app, ["cyclegan", "train", "--run-dir", str(run_dir), "--resume", "--option",
                                   "num_patches=8"])
    assert res.exit_code == 2 and "cannot change --num-patches (--option num_patches) when" in res.output
    res = CliRunner().invoke(app, ["cyclegan", "train", "--run-dir", str(run_dir), "--resume", "--ngf", "4"])
    assert res.exit_code == 2 and "cannot change --ngf when" in res.output


def test_config_json_of_older_runs_still_loads_and_resumes(tmp_path):
    """Runs saved before the methods declared their own options hold CycleGAN's four at the top level (and CUT's
    runs a complete ``options`` dict besides them): they load as today's configs and resume."""
    from i2i.cyclegan.config import TrainConfig

    run = tmp_path / "run"
    flags = ["cyclegan", "train", "--run-dir", str(run), "--shapes-count", "8", "--ngf", "8", "--ndf", "8",
             "--quiet"]
    assert CliRunner().invoke(app, [*flags, "--max-iters", "2"]).exit_code == 0
    data = json.loads((run / "config.json").read_text())
    old = {**{k: v for k, v in data.items() if k != "options"}, **data["options"], "options": {}}
    assert old["lambda_A"] == 5.0 and "lambda_A" not in old["options"]
    (run / "config.json").write_text(json.dumps(old))                   # as a714268 wrote it
    assert TrainConfig.from_dict(old) == TrainConfig.from_dict(data)
    res = CliRunner().invoke(app, [*flags[:4], "--resume", "--max-iters", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "config.json").read_text())["options"] == data["options"]
    assert (run / "checkpoints" / "iter_00000003").is_dir()

    cut = run_config(model="cut").to_dict()
    old_cut = {**cut, "lambda_A": 10.0, "lambda_B": 10.0, "lambda_identity": 0.5, "pool_size": 0}
    assert TrainConfig.from_dict(old_cut) == TrainConfig.from_dict(cut)   # unused by CUT: dropped
