"""What new users fed the CLI in tours with odd files and flags: each case's exit code (docs/cli.md's table), that
nothing is lost or overwritten, and that user mistakes are never "internal error" (70). The diffusion commands run
on the bundled demo model, stopped before it loads where the point is a check made up front."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import typer
from PIL import Image
from tiny_sd import one_thread  # noqa: F401  (one_thread: autouse fixture)
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
SQUARE = ROOT / "examples" / "conditions" / "square_sketch.png"
def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def pictures(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (32, 32), "white").save(folder / "s.png")
    Image.new("RGB", (32, 32), "red").save(folder / "a.png")
    return folder


def no_diffusion_model(monkeypatch):
    from i2i.diffusion.model import DiffusionModel

    monkeypatch.setattr(DiffusionModel, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("loaded")))


# ---- no diffusion output replaces an input, not even with --overwrite ---------------------------------------------

@pytest.mark.parametrize("command, target", [
    (["ctrlx", "--structure", "{s}", "--appearance", "{a}"], "a"),
    (["ctrlx", "--structure", "{s}"], "s"),
    (["freecontrol", "--condition", "{s}", "--appearance", "{a}"], "s"),
])
def test_a_diffusion_output_never_replaces_an_input(pictures, monkeypatch, command, target):
    no_diffusion_model(monkeypatch)
    paths = {"s": pictures / "s.png", "a": pictures / "a.png"}
    before = {k: p.read_bytes() for k, p in paths.items()}
    args = [a.format(**paths) for a in command]
    for extra in ([], ["--overwrite"]):
        res = run(*args, "--prompt", "a square", "--out", paths[target], *extra)
        assert res.exit_code == EXIT_USAGE and "is an input; its output would replace it" in res.stderr, res.output
    assert {k: p.read_bytes() for k, p in paths.items()} == before


def test_a_missing_input_is_named_before_an_existing_output(pictures, monkeypatch):
    no_diffusion_model(monkeypatch)
    res = run("ctrlx", "--prompt", "a square", "--structure", pictures / "nope.png", "--out", pictures / "a.png")
    assert res.exit_code == EXIT_INPUT and "no such file" in res.stderr


# ---- job files ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, line, message", [
    ("ctrlx", {"prompt": "a red circle", "structure": 5}, '"structure" must be a string (got 5)'),
    ("ctrlx", {"prompt": "a red circle", "structure": "s.png", "appearance": [1]},
     '"appearance" must be a string or null'),
    ("freecontrol", {"prompt": "x", "condition": "s.png", "subject": 5}, '"subject" must be a string or null'),
    ("freecontrol", {"prompt": "x", "condition": "s.png", "img2img": "false"}, '"img2img" must be true or false'),
    ("generate", {"prompt": 5}, '"prompt" must be a string (got 5)'),
])
def test_job_values_of_the_wrong_type_are_usage_errors(pictures, monkeypatch, command, line, message):
    no_diffusion_model(monkeypatch)
    jobs = pictures / "jobs.jsonl"
    jobs.write_text(json.dumps(line) + "\n")
    res = run(command, "--jobs", jobs, "--out", pictures / "o")
    assert res.exit_code == EXIT_USAGE and message in res.stderr, res.output


def test_job_files_that_are_not_utf8_text_and_byte_order_marks(tmp_path):
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe{}\n")
    res = run("generate", "--jobs", tmp_path / "bin.jsonl", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_USAGE and "not a job file (not UTF-8 text" in res.stderr
    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"prompt": "a red circle"}\n')     # Notepad's UTF-8
    res = run("generate", "--jobs", tmp_path / "bom.jsonl", "--steps", 2, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["000-a-red-circle.png"]


@pytest.mark.parametrize("command", [["generate"], ["ctrlx", "--structure", "{s}"],
                                     ["freecontrol", "--condition", "{s}"]])
def test_a_prompt_that_is_not_utf8_is_a_usage_error_before_the_model_loads(pictures, monkeypatch, command):
    """A Latin-1 shell argument reaches Python as lone surrogates (\\udce9 for the byte 0xe9), as does a JSON
    \\udcff escape in a job file: the tokenizer cannot take them."""
    no_diffusion_model(monkeypatch)
    command = [c.format(s=pictures / "s.png") for c in command]
    res = run(*command, "--prompt", "un carr\udce9 rouge", "--out", pictures / "o")
    assert res.exit_code == EXIT_USAGE, res.output
    assert 'job 0: the prompt "un carr? rouge" is not valid UTF-8 text' in res.stderr and "LANG=C.UTF-8" in res.stderr
    image = {command[1][2:]: "s.png"} if len(command) > 1 else {}
    jobs = pictures / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"prompt": p, **image}) + "\n" for p in ("a red circle", "a red \udcff circle")))
    assert "\\udcff" in jobs.read_text()                  # json.dumps writes the escape
    res = run(*command[:1], "--jobs", jobs, "--out", pictures / "o")
    assert res.exit_code == EXIT_USAGE and 'job 1: the prompt "a red ? circle"' in res.stderr, res.output


# ---- outputs: folders that cannot be written, names that are not folders, the output inside the input folder ------

def test_an_unwritable_output_folder_is_exit_6_before_any_work(tiny_run, pictures, tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    no_diffusion_model(monkeypatch)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    import i2i.cli.cyclegan as cli

    monkeypatch.setattr(cli, "_load_any_generator", lambda *a, **k: pytest.fail("loaded"))
    for args in (["cyclegan", "translate", pictures, "-c", tiny_run], ["preprocess", pictures, "--kind", "canny"],
                 ["generate", "-p", "a", "-p", "b", "--steps", 2]):
        res = run(*args, "--out", tmp_path / "ro" / "sub")
        assert res.exit_code == EXIT_OUTPUT and "cannot write (Read-only file system)" in res.stderr, res.output
    assert not (tmp_path / "ro").exists()                     # the probe made no folder


def test_images_into_a_video_file_name_are_refused(tiny_run, pictures, tmp_path):
    res = run("cyclegan", "translate", pictures / "s.png", "-c", tiny_run, "--out", tmp_path / "z.mp4")
    assert res.exit_code == EXIT_USAGE and "names a video file, but no input is a video" in res.stderr
    assert not (tmp_path / "z.mp4").exists()


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(tiny_run, pictures):
    out = pictures / "out"
    for extra in ([], ["--skip-existing"]):                   # a restart loop: the second run finds them done
        res = run("cyclegan", "translate", pictures, "-c", tiny_run, "--out", out, "--quiet", *extra)
        assert res.exit_code == EXIT_OK, res.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "s.png"]
    for extra in ([], ["--overwrite"]):
        res = run("preprocess", pictures, "--kind", "invert", "--out", pictures / "maps", "--quiet", *extra)
        assert res.exit_code == EXIT_OK, res.output
    assert sorted(p.relative_to(pictures / "maps").as_posix() for p in (pictures / "maps").rglob("*.png")) == [
        "a.png", "out/a.png", "out/s.png", "s.png"]             # translate's outputs are inputs here; its own not


def test_preprocess_leaves_videos_in_folders_out_and_refuses_one_named(pictures, tmp_path):
    from video_clips import make_clip

    make_clip(pictures / "clip.mp4", n=2, width=32, height=32, audio=False)
    res = run("preprocess", pictures, "--kind", "invert", "--out", tmp_path / "maps", "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["a.png", "s.png"]
    res = run("preprocess", pictures / "clip.mp4", "--kind", "invert", "--out", tmp_path / "m2")
    assert res.exit_code == EXIT_USAGE and "a video; preprocess makes maps of images" in res.stderr


# ---- sizes, lists, summaries, warnings ----------------------------------------------------------------------------

def test_absurd_sizes_are_refused_before_any_memory_is_taken(tiny_run, pictures, tmp_path):
    res = run("preprocess", pictures / "s.png", "--kind", "canny", "--resolution", 100000, "--out", tmp_path / "r.png")
    assert res.exit_code == EXIT_USAGE and "--resolution 100000: must be from 1 to 16,384 pixels" in res.stderr
    res = run("cyclegan", "translate", pictures / "s.png", "-c", tiny_run, "--size", 30000, "--out", tmp_path / "t")
    assert res.exit_code == EXIT_USAGE and "--size 30000: must be from 1 to 16,384 pixels" in res.stderr


def test_an_input_list_that_is_not_text_is_exit_3(tiny_run, tmp_path):
    (tmp_path / "list.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xd8\xff")
    for args in (["cyclegan", "translate", f"@{tmp_path / 'list.txt'}", "-c", tiny_run],
                 ["preprocess", f"@{tmp_path / 'list.txt'}"]):
        res = run(*args, "--out", tmp_path / "o")
        assert res.exit_code == EXIT_INPUT and "not an input list" in res.stderr, res.output


def test_merge_summaries_refuses_broken_files_and_unrelated_jobs(tmp_path):
    def summary(**changes):
        record = {"kind": "summary", "command": "cyclegan translate", "rank": 0, "world_size": 2, "total_inputs": 4,
                  "inputs": 2, "translated": 2, "skipped": 0, "failed": 0, "failures": [], "out": "o"}
        return json.dumps({**record, **changes}) + "\n"

    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xd8\xff\xe0")
    (tmp_path / "rank.jsonl").write_text(summary(rank="x"))
    (tmp_path / "failures.jsonl").write_text(summary(failures=5))
    (tmp_path / "empty.jsonl").write_text('{"kind": "summary"}\n')
    for name, message in [("bin", "not a JSON-lines file"), ("rank", '"rank" must be an integer'),
                          ("failures", '"failures" must be a list'), ("empty", '"command" must be a string')]:
        res = run("merge-summaries", tmp_path / f"{name}.jsonl")
        assert res.exit_code == EXIT_INPUT and message in res.stderr, (name, res.output)
    (tmp_path / "a.jsonl").write_text(summary() + summary(rank=1))
    (tmp_path / "b.jsonl").write_text(summary(out="other"))                  # another batch's rank 0
    (tmp_path / "c.jsonl").write_text(summary(world_size=3, rank=2))
    for other in ("b", "c"):
        res = run("merge-summaries", tmp_path / "a.jsonl", tmp_path / f"{other}.jsonl")
        assert res.exit_code == EXIT_USAGE and "the summaries come from different jobs" in res.stderr, res.output
    assert run("merge-summaries", tmp_path / "a.jsonl").exit_code == EXIT_OK


def test_library_warnings_print_as_one_line(tiny_run, pictures, tmp_path):
    os.symlink(pictures, pictures / "loop")                   # a link back to a folder already read
    res = run("cyclegan", "translate", pictures, "-c", tiny_run, "--out", tmp_path / "o", "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    assert "warning: " in res.stderr and "skipped, a link to a folder already read" in res.stderr
    assert "UserWarning" not in res.stderr and "warnings.warn" not in res.stderr


@pytest.mark.parametrize("command, flag", [("ctrlx", "--guidance-scale"), ("generate", "--guidance-scale"),
                                           ("freecontrol", "--structure-weight")])
def test_nan_weights_are_named_as_not_finite(pictures, monkeypatch, command, flag):
    no_diffusion_model(monkeypatch)
    image = {"ctrlx": ["--structure", pictures / "s.png"], "freecontrol": ["--condition", pictures / "s.png"],
             "generate": []}[command]
    res = run(command, "-p", "a square", *image, flag, "nan", "--out", pictures / "o")
    assert res.exit_code == EXIT_USAGE and f"{flag} must be a finite number, at least 0 (got nan)" in res.stderr


# ---- signals and pipes --------------------------------------------------------------------------------------------

def test_sigterm_stops_a_command_as_ctrl_c_does():
    from i2i.cli.common import run_guarded

    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("SIGTERM did not stop the command")

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(typer.Exit) as stopped:
        run_guarded(terminated, debug=False)
    assert stopped.value.exit_code == EXIT_INTERRUPTED
    assert signal.getsignal(signal.SIGTERM) is previous          # restored after the command


def test_a_closed_output_pipe_stops_quietly_with_141(monkeypatch, capsys):
    from i2i.cli.common import EXIT_BROKEN_PIPE, run_guarded

    monkeypatch.setattr(os, "dup2", lambda *a: None)            # leave pytest's stdout alone
    monkeypatch.setattr("sys.stdout", open(os.devnull, "w"))

    def reader_gone():
        raise BrokenPipeError

    with pytest.raises(typer.Exit) as stopped:
        run_guarded(reader_gone, debug=False)
    assert stopped.value.exit_code == EXIT_BROKEN_PIPE == 141
    assert "internal error" not in capsys.readouterr().err


def test_precision_auto_works_in_every_diffusion_command(tmp_path):
    res = run("generate", "-p", "a red circle", "--steps", 2, "--precision", "auto", "--out", tmp_path / "g.png",
              "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    assert Image.open(tmp_path / "g.png").size == (64, 64)


def test_the_input_folder_as_its_own_output_folder_is_refused(tiny_run, pictures):
    before = {p.name: p.read_bytes() for p in pictures.iterdir()}
    for args in (["cyclegan", "translate", pictures, "-c", tiny_run], ["preprocess", pictures, "--kind", "invert"]):
        res = run(*args, "--out", pictures, "--overwrite")
        assert res.exit_code == EXIT_USAGE and "is an input; its output would replace it" in res.stderr, res.output
    assert {p.name: p.read_bytes() for p in pictures.iterdir()} == before


# ---- training: mistakes found before the first step, datasets that move ------------------------------------------

SMALL_NETS = ["--ngf", "8", "--ndf", "8", "--num-workers", "0", "--quiet"]


@pytest.mark.parametrize("args, code, message", [
    (["--net-g", "unet_128"], EXIT_USAGE, "must be a multiple of 128 for unet_128"),
    (["--lr-policy", "step", "--lr-decay-iters", "0"], EXIT_USAGE, "--lr-decay-iters must be at least 1"),
    (["--device", "tpu"], EXIT_USAGE, "unknown device 'tpu'"),
    (["--lambda-a", "nan"], EXIT_USAGE, "--lambda-a (--option lambda_A) must be a finite number (got nan)"),
    (["--model", "cut", "--option", "nce_t=inf"], EXIT_USAGE, "(--option nce_t) must be a finite number"),
    (["--model", "cut", "--lambda-nce", "4", "--option", "lambda_nce=2"], EXIT_USAGE, "disagree: give one of them"),
])
def test_training_mistakes_are_usage_errors_before_any_step(tmp_path, args, code, message):
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", tmp_path / "r", "--max-iters", 1, *SMALL_NETS, *args)
    assert res.exit_code == code and message in res.stderr, res.output
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_training_into_a_file_or_from_an_empty_dataroot(tmp_path):
    (tmp_path / "afile").write_text("x")
    res = run("cyclegan", "train", "builtin:shapes", "--run-dir", tmp_path / "afile", "--max-iters", 1, *SMALL_NETS)
    assert res.exit_code == EXIT_OUTPUT and "is a file, not a folder" in res.stderr
    res = run("cyclegan", "train", "", "--run-dir", tmp_path / "r", "--max-iters", 1, *SMALL_NETS)
    assert res.exit_code == EXIT_USAGE and "DATAROOT is empty" in res.stderr


def folder_dataset(root: Path, sizes=((32, 32),) * 4) -> Path:
    for domain, colour in (("A", "red"), ("B", "blue")):
        (root / f"train{domain}").mkdir(parents=True)
        for k, size in enumerate(sizes):
            Image.new("RGB", size, colour).save(root / f"train{domain}" / f"{k}.png")
    return root


def test_images_too_small_to_crop_are_skipped_at_the_start(tmp_path):
    data = folder_dataset(tmp_path / "d", sizes=((40, 40),) * 4 + ((20, 20),))
    res = run("cyclegan", "train", data, "--run-dir", tmp_path / "r", "--max-iters", 6, "--preprocess", "crop",
              "--crop-size", 32, "--serial-batches", *SMALL_NETS)
    assert res.exit_code == EXIT_OK, res.output
    assert "skipping" in res.stderr and "4.png: 20x20 is smaller than --crop-size 32" in res.stderr


def test_a_moved_dataset_resumes_where_it_is_now_and_a_one_sided_run_needs_metrics(tmp_path):
    data = folder_dataset(tmp_path / "d")
    common = ["--load-size", 32, "--crop-size", 32, *SMALL_NETS]
    assert run("cyclegan", "train", data, "--run-dir", tmp_path / "r", "--max-iters", 2, *common).exit_code == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["dataroot"] == str(data.resolve())
    data.rename(tmp_path / "moved")
    res = run("cyclegan", "train", "--run-dir", tmp_path / "r", "--resume", "--max-iters", 4, "--quiet")
    assert res.exit_code == EXIT_INPUT and "the run's dataset is not there" in res.stderr
    res = run("cyclegan", "train", tmp_path / "moved", "--run-dir", tmp_path / "r", "--resume", "--max-iters", 4,
              "--quiet")
    assert res.exit_code == EXIT_OK, res.output
    res = run("cyclegan", "train", tmp_path / "moved", "--model", "fastcut", "--run-dir", tmp_path / "f",
              "--max-iters", 2, *common)
    assert res.exit_code == EXIT_OK, res.output
    res = run("cyclegan", "eval", tmp_path / "f", "--out", tmp_path / "e")
    assert res.exit_code == EXIT_USAGE and "one-sided run (A -> B only)" in res.stderr


def test_a_discriminator_file_is_named_as_one_on_import(tmp_path):
    import torch

    from i2i.cyclegan.config import DiscriminatorConfig
    from i2i.cyclegan.networks import define_D

    torch.save(define_D(DiscriminatorConfig()).state_dict(), tmp_path / "latest_net_D_A.pth")
    res = run("cyclegan", "import", tmp_path / "latest_net_D_A.pth", "--out", tmp_path / "g.safetensors")
    assert res.exit_code == 4 and "holds a discriminator's weights" in res.stderr, res.output


def test_export_takes_a_tiny_size_up_to_one_the_generator_runs_at(tiny_run, tmp_path):
    pytest.importorskip("onnx")
    res = run("cyclegan", "export", "-c", tiny_run, "--size", 2, "--onnx", tmp_path / "g.onnx", "--quiet")
    assert res.exit_code == EXIT_OK, res.output


@pytest.mark.parametrize("command", ["generate", "ctrlx", "freecontrol"])
def test_steps_past_the_schedules_last_noise_level_are_refused(pictures, monkeypatch, command):
    no_diffusion_model(monkeypatch)
    image = {"ctrlx": ["--structure", pictures / "s.png"], "freecontrol": ["--condition", pictures / "s.png"],
             "generate": []}[command]
    res = run(command, "-p", "a square", *image, "--steps", 1000, "--out", pictures / "o")
    assert res.exit_code == EXIT_USAGE and "--steps must be between 1 and 999" in res.stderr, res.output


@pytest.mark.parametrize("command", ["generate", "ctrlx", "freecontrol"])
def test_flags_without_a_prompt_are_an_error_and_the_bare_command_its_help(monkeypatch, tmp_path, command):
    no_diffusion_model(monkeypatch)
    bare = run(command)
    assert bare.exit_code == EXIT_OK and "Usage:" in bare.stdout
    for flags in (["--steps", "3", "-o", tmp_path / "o"], ["--seed", "3"]):
        res = run(command, *flags)
        assert res.exit_code == EXIT_USAGE and "nothing to do: give --prompt" in res.stderr, res.output
        assert "Usage:" not in res.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags, code, message", [
    (["--subject", "dog;lion"], EXIT_USAGE, "'dog' does not occur in the inversion prompt 'a square'"),
    (["--bases", "{tmp}/nope.safetensors"], EXIT_INPUT, "no such bases file"),
    (["--bases", "{tmp}/broken.safetensors"], 4, "not a valid i2i bases file"),
    (["--prompt", ", 🟥"], EXIT_USAGE, "has no word to take the concept of the semantic bases from"),
])
def test_freecontrol_flags_checked_before_the_model_loads(pictures, monkeypatch, tmp_path, flags, code, message):
    no_diffusion_model(monkeypatch)
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    res = run("freecontrol", "--prompt", "a square", "--condition", pictures / "s.png", "--out", tmp_path / "o",
              *[f.format(tmp=tmp_path) for f in flags])
    assert res.exit_code == code and message in res.stderr, res.output


def test_a_diverged_sampling_is_a_numerical_error_not_a_black_image(tmp_path):
    res = run("generate", "--prompt", "a red square", "--guidance-scale", "1e38", "--steps", "2", "-q",
              "--out", tmp_path / "g.png")
    assert res.exit_code == 5 and "latents are not finite" in res.stderr, res.output
    assert not (tmp_path / "g.png").exists()


def test_output_names_keep_letters_of_every_script():
    from i2i.text import slug

    assert [slug(t) for t in ("un carré rouge", "赤い四角", "A red_square, 4K!", " ... ", "हिन्दी किताब")] == [
        "un-carré-rouge", "赤い四角", "a-red-square-4k", "image", "हिन्दी-किताब"]     # vowel signs kept
    assert len(slug("猫" * 30).encode("utf-8")) <= 40 and slug("猫" * 30) == "猫" * 13   # bytes, whole characters


@pytest.mark.parametrize("args, message", [
    (["ctrlx", "--prompt", "a square", "--structure", ""], "the structure image path is empty"),
    (["freecontrol", "--prompt", "a square", "--condition", " "], "the condition image path is empty"),
    (["cyclegan", "translate", "", "-c", "run"], "an input path is empty"),
    (["preprocess", "", "--kind", "canny"], "an input path is empty"),
    (["freecontrol", "bases", "--concept", "  "], "--concept is empty"),
])
def test_an_empty_path_or_word_is_a_usage_error_not_the_current_folder(monkeypatch, tmp_path, args, message):
    no_diffusion_model(monkeypatch)
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (32, 32), "white").save(tmp_path / "here.png")      # what '' would have read
    res = run(*args, *(["--out", tmp_path / "o"] if args[1] != "bases" else []))
    assert res.exit_code == EXIT_USAGE and message in res.stderr, res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("line, message", [
    ({"prompt": "a", "num_images": True}, '"num_images" must be a whole number (got true)'),
    ({"prompt": "a", "seed": 2.0}, '"seed" must be a whole number (got 2.0)'),
    ({"prompt": "a", "num_images": 0}, '"num_images" must be at least 1'),
    ('{"prompt": "a", "seed": 1, "seed": 2}', 'the key "seed" is given twice'),
])
def test_job_counts_and_repeated_keys_are_usage_errors(monkeypatch, tmp_path, line, message):
    no_diffusion_model(monkeypatch)
    (tmp_path / "j.jsonl").write_text(line if isinstance(line, str) else json.dumps(line))
    res = run("generate", "--jobs", tmp_path / "j.jsonl", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_USAGE and message in res.stderr, res.output


def test_a_job_name_with_the_png_extension_is_not_doubled(tmp_path):
    from i2i.diffusion.jobs import JobSchema, build_jobs

    (tmp_path / "j.jsonl").write_text('{"prompt": "a", "name": "cat.png"}\n{"prompt": "b", "name": "dog"}\n')
    jobs = build_jobs(JobSchema(()), [], {}, tmp_path / "j.jsonl", {"num_images": 1}, 0)
    assert [job["name"] for job in jobs] == ["cat", "dog"]


def test_an_out_name_ending_in_a_slash_is_a_folder_even_when_it_reads_like_a_file(tiny_run, pictures, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("cyclegan", "translate", pictures / "s.png", "-c", tiny_run, "-q")                 # the default
    assert res.exit_code == EXIT_OK and (tmp_path / "out" / "s.png").is_file(), res.output
    res = run("cyclegan", "translate", pictures / "s.png", "-c", tiny_run, "--out", f"{tmp_path}/res.png/", "-q")
    assert res.exit_code == EXIT_OK, res.output
    assert (tmp_path / "res.png").is_dir() and (tmp_path / "res.png" / "s.png").is_file()
    res = run("preprocess", pictures / "s.png", "--kind", "canny", "--out", f"{tmp_path}/maps.png/", "-q")
    assert res.exit_code == EXIT_OK and (tmp_path / "maps.png" / "s.png").is_file(), res.output
    res = run("cyclegan", "translate", pictures / "a.png", "-c", tiny_run, "--out", tmp_path / "file.png", "-q")
    assert res.exit_code == EXIT_OK and (tmp_path / "file.png").is_file()     # without the slash: the file
    res = run("cyclegan", "translate", pictures / "a.png", "-c", tiny_run, "--out", f"{tmp_path}/file.png/", "-q")
    flat = " ".join(res.output.replace("│", " ").split())        # the error box wraps long paths anywhere
    assert res.exit_code == EXIT_USAGE and "is a file" in flat, res.output


def test_a_run_folder_that_cannot_be_made_and_zero_widths_fail_before_any_data(tmp_path, monkeypatch):
    from i2i.cyclegan import loop

    monkeypatch.setattr(loop, "_build_data", lambda *a, **k: pytest.fail("the data was built"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    for run_dir, why in (("afile/sub", "afile is a file, not a folder"), ("broken/sub", "which does not exist")):
        res = run("cyclegan", "train", "--run-dir", tmp_path / run_dir, "--max-iters", "1", "-q")
        assert res.exit_code == EXIT_OUTPUT and why in res.output, res.output
    for flag in ("--ngf", "--ndf", "--n-layers-d"):
        res = run("cyclegan", "train", "--run-dir", tmp_path / "r", flag, "0", "--max-iters", "1", "-q")
        assert res.exit_code == EXIT_USAGE and f"{flag} 0: must be at least 1" in res.output, res.output
    assert not (tmp_path / "r").exists()


def test_cuts_feature_head_file_is_named_as_one(tmp_path):
    import torch

    head = {f"mlp_{i}.{j}.{kind}": torch.zeros(8, 8) if kind == "weight" else torch.zeros(8)
            for i in range(2) for j in (0, 2) for kind in ("weight", "bias")}
    torch.save(head, tmp_path / "latest_net_F.pth")
    res = run("cyclegan", "import", tmp_path / "latest_net_F.pth", "--out", tmp_path / "g.safetensors",
              "--net-g", "resnet_9blocks")
    assert res.exit_code == 4 and "PatchNCE feature head" in res.stderr, res.output


def test_messages_name_the_flags_to_give(tmp_path, pictures):
    res = run("cyclegan", "train", "--model", "cut", "--net-g", "unet_256", "--run-dir", tmp_path / "r", "-q")
    assert res.exit_code == EXIT_USAGE and "add --no-antialias --no-antialias-up" in res.output, res.output
    res = run("cyclegan", "translate", pictures, "-c", tmp_path / "none", "--tile", "16", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_USAGE and "--tile 16 with --tile-overlap 32 (its default is 32)" in res.output


def test_a_prompt_without_a_word_is_fine_when_guidance_is_off(pictures, tmp_path):
    """The concept is needed only for the guidance: with --structure-weight 0 the check before loading let the
    command refuse what the pipeline runs."""
    res = run("freecontrol", "--prompt", ", 🟥", "--condition", pictures / "s.png", "--out", tmp_path / "o.png",
              "--structure-weight", "0", "--steps", "2", "-q")
    assert res.exit_code == EXIT_OK, res.output
