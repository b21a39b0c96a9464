"""A new diffusion method is a config, a pipeline and one registration line: its job schema's image and text keys
become flags by themselves (declared help where the schema gives one, a generic one otherwise)."""

import dataclasses

import pytest
from typer.testing import CliRunner

from i2i.diffusion.jobs import JobFlag, JobSchema
from i2i.diffusion.method import DiffusionMethod
from i2i.generate.config import GenerateConfig

INIT = DiffusionMethod(
    "initgen", GenerateConfig, "i2i.generate.pipeline:GeneratePipeline",
    JobSchema(images=("init", "palette"), options=("init_prompt", "style"),
              flags={"init": JobFlag("Start image; repeatable.", short="i")}),
    seed=5, summary="A test method.", usage="i2i initgen --prompt P --init x.png")


def command():
    import typer

    from i2i.cli.diffusion import diffusion_app

    app = typer.Typer()
    app.add_typer(diffusion_app(INIT), name="initgen")      # the one registration line
    return app


def test_the_job_keys_are_flags_in_the_methods_help_only():
    help_text = CliRunner().invoke(command(), ["initgen", "--help"], env={"COLUMNS": "200"}).output
    for text in ("--init", "-i", "Start image; repeatable.", "--palette", "once per --init", "--init-prompt",
                 "--style", "paired with --init in order"):
        assert text in help_text, text
    from i2i.cli.app import app
    assert "--init-prompt" not in CliRunner().invoke(app, ["generate", "--help"]).output


def test_the_flags_reach_the_jobs(tmp_path, monkeypatch):
    from i2i.diffusion import jobs

    seen = []
    monkeypatch.setattr(jobs, "run_jobs", lambda run, load, generate, reporter: seen.extend(run.jobs))
    args = ["initgen", "-p", "a", "-p", "b", "-i", "x.png", "--init", "y.png", "--palette", "p.png", "--style", "flat",
            "--out", str(tmp_path)]
    res = CliRunner().invoke(command(), args)
    assert res.exit_code == 0, res.output
    assert [(j["prompt"], j["init"], j["palette"], j["style"], j["init_prompt"], j["seed"]) for j in seen] == [
        ("a", "x.png", "p.png", "flat", None, 5), ("b", "y.png", "p.png", "flat", None, 6)]
    res = CliRunner().invoke(command(), ["initgen", "-p", "a", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--init" in res.output


def test_a_job_key_that_shadows_a_shared_flag_is_refused():
    from i2i.cli.diffusion import diffusion_app

    clash = dataclasses.replace(INIT, jobs=JobSchema(images=("model",)))
    with pytest.raises(ValueError, match="'model' would shadow"):
        diffusion_app(clash)


def test_run_batch_from_python_writes_what_the_command_writes(tmp_path):
    from i2i.cli.app import app
    from i2i.diffusion.batch import run_batch
    from i2i.generate.config import GENERATE

    args = ["generate", "-p", "a red circle", "-p", "a blue square", "--steps", "2", "--seed", "3", "-q"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    summary = run_batch(GENERATE, ["a red circle", "a blue square"], out=tmp_path / "py",
                        changes={"num_inference_steps": 2}, seed=3, device="cpu")
    names = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "py").iterdir()) and len(names) == 2
    assert all((tmp_path / "cli" / n).read_bytes() == (tmp_path / "py" / n).read_bytes() for n in names)
    assert (summary.done, summary.total_inputs) == (2, 2)
    again = run_batch(GENERATE, ["a red circle", "a blue square"], out=tmp_path / "py",
                      changes={"num_inference_steps": 2}, seed=3, skip_existing=True)
    assert (again.done, again.skipped) == (0, 2)
