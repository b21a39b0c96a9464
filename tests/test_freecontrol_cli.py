"""`i2i freecontrol` end to end on a tiny SD folder saved with save_pretrained: --json, --save-unguided, batches,
JSONL jobs, sharding by rank, the bases command, exit codes, and the example batch script."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tiny_sd import one_thread, save_sd  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
SQUARE = ROOT / "examples" / "conditions" / "square_sketch.png"
CIRCLE = ROOT / "examples" / "conditions" / "circle_sketch.png"


def json_lines(text):
    """The per-image records (the batch's closing summary record left out)."""
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("kind") != "summary"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_sd(tmp_path_factory.mktemp("model") / "tiny-sd")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cli(model_dir, cache):
    def invoke(*args, model=True, env=None):
        fast = ["--steps", "6", "--inversion-steps", "6", "--seed-images", "2", "--bases-steps", "6",
                "--cache-dir", str(cache), "--inversion-prompt", "an outline of a square", "-q"]
        argv = ["freecontrol", *fast, *(["--model", str(model_dir)] if model else []), *map(str, args)]
        return CliRunner().invoke(app, argv, env=env)
    return invoke


def test_one_call_flag_gives_the_same_image(cli, tmp_path, monkeypatch):
    import numpy as np

    from i2i.freecontrol.pipeline import FreeControlPipeline

    layouts = []
    original = FreeControlPipeline._guided_step

    def spy(self, *args, **kwargs):
        layouts.append(self.one_call)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FreeControlPipeline, "_guided_step", spy)
    images = []
    for flag in ("--two-calls", "--one-call"):
        res = cli("--prompt", "a red square", "--condition", SQUARE, "--json", "--out", tmp_path / flag[2:], flag,
                  "--subject", "square;square")
        assert res.exit_code == 0, res.output
        (record,) = json_lines(res.stdout)
        images.append(np.asarray(Image.open(record["image"]), dtype=np.float32))
    assert set(layouts[:2]) == {False} and set(layouts[-2:]) == {True}
    assert np.abs(images[0] - images[1]).mean() < 2.0                # rounding of other batch sizes only


def test_end_to_end_json_guided_and_unguided(cli, tmp_path):
    out = tmp_path / "out"
    res = cli("--prompt", "a red square", "--condition", SQUARE, "--save-unguided", "--json", "--out", out,
              "--subject", "square;square")
    assert res.exit_code == 0, res.output
    (record,) = json_lines(res.stdout)
    assert record["seed"] == 2028 and record["guided_steps"] == 3 and record["skipped_steps"] == 0
    guided, unguided = Path(record["image"]), Path(record["unguided"])
    assert guided.parent == out and unguided.name == guided.stem + "_unguided.png"
    a, b = Image.open(guided), Image.open(unguided)
    assert a.size == b.size == (32, 32)
    assert a.tobytes() != b.tobytes()
    again = cli("--prompt", "a red square", "--condition", SQUARE, "--out", out, "--subject", "square;square")
    assert again.exit_code == 6 and "already exists" in again.output            # never overwrites silently
    forced = cli("--prompt", "a red square", "--condition", SQUARE, "--out", out, "--subject", "square;square",
                 "--overwrite", "--json", "--save-unguided")
    assert forced.exit_code == 0 and Image.open(guided).tobytes() == a.tobytes()   # deterministic
    alone = cli("--prompt", "a red square", "--condition", SQUARE, "--out", out, "--subject", "square;square",
                "--overwrite")            # no siblings after the guidance window: fewer UNet rows, other rounding
    import numpy as np

    assert alone.exit_code == 0
    diff = np.abs(np.asarray(Image.open(guided), np.float32) - np.asarray(a, np.float32))
    assert diff.mean() < 2.0


def test_out_may_name_the_one_image_file(cli, tmp_path):
    out = tmp_path / "lion.png"
    res = cli("--prompt", "a red square", "--condition", SQUARE, "--save-unguided", "--json", "--out", out,
              "--subject", "square;square")
    assert res.exit_code == 0, res.output
    (record,) = json_lines(res.stdout)
    assert record["image"] == str(out) and record["unguided"] == str(tmp_path / "lion_unguided.png")
    assert Image.open(out).size == (32, 32) and (tmp_path / "lion_unguided.png").is_file()
    # two images cannot share one file name: a usage error before any work, nothing written
    res = cli("--prompt", "a red square", "--condition", SQUARE, "--num-images", "2", "--out", tmp_path / "two.png")
    assert res.exit_code == 2 and "give a folder" in res.output and not (tmp_path / "two.png").exists()


@pytest.mark.parametrize("args, code, text", [
    (["--steps", "0"], 2, "--steps"),
    (["--structure-weight", "-1"], 2, "--structure-weight"),
    (["--appearance-weight", "-0.5"], 2, "--appearance-weight"),
    (["--appearance-components", "0"], 2, "--appearance-components"),
    (["--num-images", "0"], 2, "--num-images"),
    (["--subject", "lion;lion"], 2, "does not occur"),
    (["--size", "36"], 2, "multiple of"),
])
def test_bad_flags_exit_2(cli, tmp_path, args, code, text):
    res = cli("--prompt", "a red square", "--condition", SQUARE, "--out", tmp_path, *args)
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output


def test_bad_inputs_and_models(cli, tmp_path):
    res = cli("--prompt", "a red square", "--condition", tmp_path / "missing.png", "--out", tmp_path)
    assert res.exit_code == 3 and "no such file" in res.output
    res = cli("--prompt", "a red square", "--condition", SQUARE, "--out", tmp_path, "--model", tmp_path / "nope",
              model=False)
    assert res.exit_code == 4 and "no such model folder" in res.output
    (tmp_path / "empty").mkdir()
    res = cli("--prompt", "a", "--condition", SQUARE, "--out", tmp_path, "--model", tmp_path / "empty", model=False)
    assert res.exit_code == 4 and "model_index.json" in res.output
    res = cli("--condition", SQUARE, "--out", tmp_path)
    assert res.exit_code == 2 and "--prompt" in res.output
    res = cli("--prompt", "a", "--prompt", "b", "--condition", SQUARE, "--condition", SQUARE, "--condition", CIRCLE)
    assert res.exit_code == 2
    res = cli("--prompt", " ", "--condition", tmp_path / "missing.png", "--out", tmp_path)  # before any reading
    assert res.exit_code == 2 and "prompt is empty" in res.output
    res = cli("--prompt", "a red square", "--condition", "https://example.com/sketch.png", "--out", tmp_path)
    assert res.exit_code == 3 and "URLs are not downloaded" in res.output


def test_without_model_the_error_says_to_pass_one(cli, tmp_path, monkeypatch):
    from i2i.demo import model as demo

    monkeypatch.setattr(demo, "ASSETS", tmp_path / "no-assets")      # as if the package shipped without it
    res = cli("--prompt", "a red square", "--condition", SQUARE, "--out", tmp_path, model=False,
              env={"I2I_FREECONTROL_MODEL": ""})
    assert res.exit_code == 4 and "--model" in res.output


def test_words_the_demo_model_does_not_know_are_named(cli, model_dir, tmp_path):
    from i2i.demo.model import demo_vocabulary_warning

    res = cli("--prompt", "a photo of a lion, in the desert", "--condition", tmp_path / "missing.png", model=False,
              env={"I2I_FREECONTROL_MODEL": ""})
    assert res.exit_code == 3                                  # the missing condition, after the warning
    warning = res.output.split("error:")[0]
    assert "demo model" in warning and "'lion'" in warning and "'desert'" in warning and "'photo'" not in warning
    res = cli("--prompt", "a red square", "--condition", tmp_path / "missing.png", model=False,
              env={"I2I_FREECONTROL_MODEL": ""})
    assert res.exit_code == 3 and "demo model" not in res.output
    assert demo_vocabulary_warning(["a lion"], model_dir) is None            # other models: no vocabulary check
    from i2i.demo.model import demo_model_path

    accented = demo_vocabulary_warning(["un carré rouge", "赤い四角", "हिन्दी"], demo_model_path())
    assert "'carré'" in accented and "'赤い四角'" in accented and "'carr'" not in accented and "'हिन्दी'" in accented
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--concept", "lion", "--device", "cpu", "--precision",
                                   "fp16"], env={"I2I_FREECONTROL_MODEL": ""})   # stops before loading the model
    assert res.exit_code == 2 and "'lion'" in res.output.split("error:")[0]


def _jobs(tmp_path):
    (tmp_path / "conds").mkdir()
    for p in (SQUARE, CIRCLE):
        (tmp_path / "conds" / p.name).write_bytes(p.read_bytes())
    lines = [{"prompt": "a red square", "condition": "conds/square_sketch.png", "subject": "square"},
             {"prompt": "a blue circle", "condition": "conds/circle_sketch.png", "seed": 5, "name": "circle"},
             {"prompt": "a green square", "condition": "conds/square_sketch.png", "img2img": True}]
    path = tmp_path / "jobs.jsonl"
    path.write_text("# three jobs\n" + "\n".join(json.dumps(x) for x in lines) + "\n\n")
    return path


def test_jsonl_batch_and_sharding_by_rank(cli, tmp_path, monkeypatch):
    jobs = _jobs(tmp_path)
    res = cli("--jobs", jobs, "--out", tmp_path / "all", "--json")
    assert res.exit_code == 0, res.output
    records = json_lines(res.stdout)
    assert [r["job"] for r in records] == [0, 1, 2]
    assert [r["seed"] for r in records] == [2028, 5, 2030] and records[2]["img2img"]
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert "circle.png" in names and len(names) == 3
    shard_names = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        res = cli("--jobs", jobs, "--out", tmp_path / "sharded", "--json")
        assert res.exit_code == 0, res.output
        shard_names.append(sorted(Path(r["image"]).name for r in json_lines(res.stdout)))
    assert shard_names[1] == ["circle.png"] and len(shard_names[0]) == 2
    assert sorted(shard_names[0] + shard_names[1]) == names
    for name in names:                       # the same job gives the same file, whichever process ran it
        assert (tmp_path / "all" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes()


def test_several_prompts_for_one_condition_and_partial_failure(cli, tmp_path):
    res = cli("--prompt", "a red square", "--prompt", "a blue square", "--condition", SQUARE, "--out",
              tmp_path / "o", "--json", "--num-images", "2")
    assert res.exit_code == 0, res.output
    images = sorted(Path(r["image"]).name for r in json_lines(res.stdout))
    assert len(images) == 4 and all(n.endswith(("-0.png", "-1.png")) for n in images)
    bad = tmp_path / "jobs.jsonl"
    bad.write_text(json.dumps({"prompt": "a red square", "condition": str(SQUARE)}) + "\n"
                   + json.dumps({"prompt": "a red square", "condition": "missing.png"}) + "\n")
    res = cli("--jobs", bad, "--out", tmp_path / "p", "--json")
    assert res.exit_code == 1 and "missing.png" in res.output
    records = json_lines(res.stdout)
    assert [r["status"] for r in records] == ["error", "ok"] and records[0]["input"].endswith("missing.png")
    bad.write_text(json.dumps({"prompt": "x", "condition": "c.png", "colour": "red"}) + "\n")
    res = cli("--jobs", bad, "--out", tmp_path / "p")
    assert res.exit_code == 2 and "colour" in res.output


def test_bases_command_caches_and_feeds_synthesis(model_dir, cache, tmp_path):
    def bases(*args):
        return CliRunner().invoke(app, ["freecontrol", "bases", "--model", str(model_dir), "--cache-dir",
                                        str(tmp_path / "c"), "--seed-images", "2", "--bases-steps", "6", "--json",
                                        "-q", *map(str, args)])
    first = bases("--concept", "cat", "--out", tmp_path / "cat.safetensors")
    assert first.exit_code == 0, first.output
    (rec,) = json_lines(first.stdout)
    assert not rec["cache_hit"] and rec["timesteps"] == 4 and len(rec["layers"]) == 3
    (rec2,) = json_lines(bases("--concept", "cat").stdout)
    assert rec2["cache_hit"] and rec2["path"] == rec["path"]
    assert bases().exit_code == 2
    res = CliRunner().invoke(app, ["freecontrol", "--prompt", "a red square", "--condition", str(SQUARE),
                                   "--model", str(model_dir), "--bases", str(tmp_path / "cat.safetensors"),
                                   "--steps", "6", "--inversion-steps", "6", "--cache-dir", str(cache), "--out",
                                   str(tmp_path / "o"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["freecontrol", "--prompt", "a", "--condition", str(SQUARE), "--model",
                                   str(model_dir), "--bases", str(tmp_path / "none.safetensors"), "-q"])
    assert res.exit_code == 3


def test_bases_import_official(tmp_path):
    layers = [f"up_blocks.1.attentions.{j}.transformer_blocks.0.attn1" for j in range(3)]
    official = tmp_path / "step_200_sample_20_id_0" / "pca_info.pt"       # where the official script writes it
    official.parent.mkdir()
    torch.save({i: {"attn_key": {n: {"mean": torch.zeros(32), "basis": torch.eye(32)[:8]} for n in layers}}
                for i in range(120)}, official)
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(official),
                                   "--out", str(tmp_path / "imported.safetensors"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    (rec,) = json_lines(res.stdout)
    assert rec["timesteps"] == 120 and rec["components"] == 8
    from i2i.freecontrol.bases import read_bases_file

    assert read_bases_file(tmp_path / "imported.safetensors").timesteps[-1] == 401
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(official)])
    assert res.exit_code == 2 and "--out" in res.output
    (tmp_path / "pca_info.pt").write_bytes(official.read_bytes())        # renamed: the schedule is unknown
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(tmp_path / "pca_info.pt"),
                                   "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 4 and "step_N" in res.output and not (tmp_path / "x.safetensors").exists()
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(official),
                                   "--out", str(tmp_path / "imported.safetensors")])
    assert res.exit_code == 6 and "already exists" in res.output                  # never replaced silently
    foreign = tmp_path / "step_200" / "pca_info.pt"
    foreign.parent.mkdir()
    torch.save({0: {"attn_key": torch.zeros(3)}}, foreign)                     # a dict, but not of features
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(foreign),
                                   "--out", str(tmp_path / "y.safetensors")])
    assert res.exit_code == 4 and "unexpected pca_info layout" in res.output, res.output
    torch.save([1, 2], tmp_path / "list.pt")                                   # not a dict: said first
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(tmp_path / "list.pt"),
                                   "--out", str(tmp_path / "z.safetensors")])
    assert res.exit_code == 4 and "expected a dict" in res.output and "step_N" not in res.output
    res = CliRunner().invoke(app, ["freecontrol", "bases", "--concept", "square", "--model", str(tmp_path / "none"),
                                   "--out", str(tmp_path / "imported.safetensors")])
    assert res.exit_code == 6 and "already exists" in res.output                  # before any model is looked for
    before = official.read_bytes()
    for out in (official, tmp_path / "b.png"):         # its own input's name; an image's name
        res = CliRunner().invoke(app, ["freecontrol", "bases", "--import-official", str(official),
                                       "--out", str(out), "--overwrite"])
        assert res.exit_code == 2 and ".safetensors name" in res.output, res.output
    assert official.read_bytes() == before and not (tmp_path / "b.png").exists()


def test_freecontrol_help_does_not_import_torch():
    code = ("import sys; from i2i.cli.app import app\n"
            "try:\n    app(['freecontrol', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for flag in ("--structure-weight", "--guidance-end", "--img2img", "--save-unguided", "--jobs"):
        assert flag in out.stdout


def test_example_batch_script(model_dir, tmp_path):
    jobs = _jobs(tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", I2I_CACHE_DIR=str(tmp_path / "cache"),
               FREECONTROL_FLAGS="--steps 6 --inversion-steps 6 --seed-images 2 --bases-steps 6")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    script = ROOT / "examples" / "freecontrol_batch.sh"
    out = subprocess.run(["bash", str(script), str(jobs), str(tmp_path / "out"), str(model_dir)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "images: 3" in out.stdout
    results = json_lines((tmp_path / "out" / "results.jsonl").read_text())
    assert len(results) == 3 and all(Path(r["unguided"]).exists() for r in results)
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_bad_condition_files_are_reported_and_the_batch_goes_on(cli, tmp_path):
    from PIL import Image

    conds = tmp_path / "conds"
    conds.mkdir()
    (conds / "zero.png").write_bytes(b"")
    (conds / "text.png").write_text("not an image")
    (conds / "cut.png").write_bytes(SQUARE.read_bytes()[:200])                   # truncated PNG
    (conds / "dir.png").mkdir()                                                  # a folder named like an image
    Image.new("P", (32, 32)).save(conds / "palette.png", transparency=0)        # palette with transparency: fine
    names = ["zero.png", "text.png", "cut.png", "dir.png", "palette.png"]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"prompt": "a red square", "condition": f"conds/{n}", "name": n[:-4]}) + "\n"
                            for n in names))
    out = tmp_path / "out"
    res = cli("--jobs", jobs, "--out", out, "--json")
    assert res.exit_code == 1 and "Traceback" not in res.output
    for n in names[:4]:
        assert n in res.stderr
    records = json_lines(res.stdout)
    assert [Path(r["image"]).name for r in records if r["status"] == "ok"] == ["palette.png"]
    assert sum(r["status"] == "error" for r in records) == 4                  # one line per failed job
    assert sorted(p.name for p in out.iterdir()) == ["palette.png"]            # nothing partial left behind
    res = cli("--prompt", "a red square", "--condition", conds / "zero.png", "--out", tmp_path / "one")
    assert res.exit_code == 3 and "zero.png" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "one").exists() or not any((tmp_path / "one").iterdir())
