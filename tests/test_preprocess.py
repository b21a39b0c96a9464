"""Condition maps (i2i.preprocess) on synthetic images, the `i2i preprocess` command, and --preprocess reaching the
diffusion commands' job loop."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import EXIT_CHECKPOINT, EXIT_INPUT, EXIT_OUTPUT, EXIT_PARTIAL, EXIT_USAGE, CheckpointError, InputError
from i2i.errors import UsageError
from i2i.preprocess import KINDS, MODEL_KINDS, condition_map

TOP, BOTTOM, LEFT, RIGHT = 16, 40, 20, 44       # the square's rows TOP..BOTTOM-1, columns LEFT..RIGHT-1


def square(size=64, fill=(200, 30, 30), background=(255, 255, 255)):
    arr = np.zeros((size, size, 3), np.uint8)
    arr[:] = background
    arr[TOP:BOTTOM, LEFT:RIGHT] = fill
    return Image.fromarray(arr)


def dark(img, level=128):
    return np.asarray(img.convert("L")) < level


def distance_to_outline(shape=(64, 64)):
    """Per pixel: Chebyshev distance to the nearest pixel on either side of the square's border."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    inside_r = np.clip(rows, TOP, BOTTOM - 1)
    inside_c = np.clip(cols, LEFT, RIGHT - 1)
    outside = np.maximum(np.abs(rows - inside_r), np.abs(cols - inside_c))
    inner = np.minimum.reduce([rows - TOP, BOTTOM - 1 - rows, cols - LEFT, RIGHT - 1 - cols])
    return np.where(outside > 0, outside - 1, inner)


def test_canny_of_a_filled_square_is_its_outline_in_black_on_white():
    edges = dark(condition_map(square(), "canny"))
    near = distance_to_outline() <= 1
    assert edges.any() and not edges[~near].any()            # every edge pixel lies on the outline
    # each side is traced along its length (a band of 2 pixels across the border)
    for band in (edges[TOP - 1:TOP + 1, LEFT:RIGHT], edges[BOTTOM - 1:BOTTOM + 1, LEFT:RIGHT]):
        assert band.any(axis=0).mean() > 0.8
    for band in (edges[TOP:BOTTOM, LEFT - 1:LEFT + 1], edges[TOP:BOTTOM, RIGHT - 1:RIGHT + 1]):
        assert band.any(axis=1).mean() > 0.8
    assert np.asarray(condition_map(square(), "canny"))[0, 0].tolist() == [255, 255, 255]


def test_canny_uses_the_official_thresholds():
    # a step of 20 grey levels gives a Sobel response of 80 per axis: under the official low threshold (100)
    faint = square(fill=(235, 235, 235))
    strong = square(fill=(0, 0, 0))
    assert not dark(condition_map(faint, "canny")).any()
    assert dark(condition_map(strong, "canny")).any()


def test_invert_none_and_rgb_output():
    img = square()
    assert np.array_equal(np.asarray(condition_map(img, "none")), np.asarray(img))
    assert np.array_equal(np.asarray(condition_map(img, "invert")), 255 - np.asarray(img))
    for kind in KINDS:
        out = condition_map(img, kind)
        assert out.mode == "RGB" and out.size == img.size


def test_edges_are_graded_and_on_the_outline():
    edges = 255 - np.asarray(condition_map(square(), "edges").convert("L")).astype(int)
    dist = distance_to_outline()
    assert edges[dist <= 1].max() == 255                       # strongest on the outline (scaled by its maximum)
    assert edges[dist >= 5].max() == 0                         # flat regions stay white
    assert 0 < np.median(edges[dist == 2]) < 255               # graded, not thresholded
    flat = condition_map(Image.new("RGB", (32, 32), (120, 60, 10)), "edges")
    assert np.asarray(flat).min() == 255


def test_scribble_strokes_follow_the_outline():
    strokes = dark(condition_map(square(), "scribble"))
    dist = distance_to_outline()
    assert strokes[dist <= 1].mean() > 0.9 and not strokes[dist >= 6].any()


def test_odd_inputs_rgba_grayscale_tiny_and_resolution(tmp_path):
    rgba = square().convert("RGBA")
    arr = np.asarray(rgba).copy()
    arr[:TOP, :, 3] = 0                                          # transparent rows count as white
    arr[:TOP, :, :3] = 0
    assert np.array_equal(np.asarray(condition_map(Image.fromarray(arr), "none")),
                          np.asarray(square().convert("RGB")))
    grey = square().convert("L")
    assert condition_map(grey, "canny").mode == "RGB"
    for kind in KINDS:
        assert condition_map(Image.new("RGB", (1, 1), (9, 9, 9)), kind).size == (1, 1)
    wide = Image.new("RGB", (300, 100), (255, 255, 255))
    assert condition_map(wide, "canny", resolution=60).size == (60, 20)
    path = tmp_path / "sq.png"
    square().save(path)
    assert np.array_equal(np.asarray(condition_map(path, "invert")), 255 - np.asarray(square()))


def test_library_defaults_are_the_commands(tmp_path, monkeypatch):
    from i2i.preprocess.files import preprocess_files

    square().save(tmp_path / "sq.png")
    monkeypatch.chdir(tmp_path)
    written = preprocess_files(["sq.png"]).written            # canny, into maps/, as `i2i preprocess sq.png`
    assert written == [Path("maps/sq.png")]
    assert np.array_equal(np.asarray(Image.open(written[0])), np.asarray(condition_map(square(), "canny")))


def test_bad_inputs_and_kinds_raise_clear_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not a recognised image"):
        condition_map(text, "canny")
    with pytest.raises(UsageError, match="unknown condition map kind"):
        condition_map(square(), "sobel")
    for kind in MODEL_KINDS:
        with pytest.raises(CheckpointError, match="no model-based maps"):
            condition_map(square(), kind)
    with pytest.raises(UsageError):
        condition_map(square(), "canny", resolution=0)


def run(*args):
    return CliRunner().invoke(app, ["preprocess", *map(str, args)])


def test_preprocess_command_writes_maps_and_refuses_to_overwrite(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    square().save(src / "a.png")
    square(fill=(0, 0, 255)).save(src / "sub" / "b.jpg")
    out = tmp_path / "maps"
    res = run(src, "--kind", "canny", "--out", out, "--json", "-q")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    *maps, summary = records
    assert {r["status"] for r in maps} == {"ok"} and len(maps) == 2
    assert summary["kind"] == "summary" and summary["command"] == "preprocess" and summary["mapped"] == 2
    assert (out / "a.png").is_file() and (out / "sub" / "b.png").is_file()
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), np.asarray(condition_map(square(), "canny")))
    before = (out / "a.png").stat().st_mtime_ns
    assert run(src, "--out", out, "-q").exit_code == EXIT_OUTPUT          # everything exists: nothing written
    assert (out / "a.png").stat().st_mtime_ns == before
    (out / "a.png").unlink()
    assert run(src, "--out", out, "-q").exit_code == EXIT_PARTIAL          # b exists, a is written
    assert (out / "a.png").is_file()
    assert run(src, "--out", out, "--overwrite", "--kind", "invert", "-q").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), 255 - np.asarray(square()))


def test_skip_existing_and_shards_write_what_one_run_writes(tmp_path):
    src, whole, parts = tmp_path / "in", tmp_path / "whole", tmp_path / "parts"
    src.mkdir()
    for i in range(5):
        square(fill=(40 * i, 0, 255 - 40 * i)).save(src / f"s{i}.png")
    (src / "bad.png").write_bytes(b"not an image")
    assert run(src, "--out", whole, "-q").exit_code == EXIT_PARTIAL                 # bad.png
    logs = []
    for k in range(2):
        res = run(src, "--out", parts, "--shard", f"{k}/2", "--json", "-q")
        logs.append(tmp_path / f"shard{k}.jsonl")
        logs[-1].write_text(res.stdout)
    names = sorted(p.name for p in whole.iterdir())
    assert names == sorted(p.name for p in parts.iterdir()) == [f"s{i}.png" for i in range(5)]
    assert all((whole / n).read_bytes() == (parts / n).read_bytes() for n in names)
    merged = CliRunner().invoke(app, ["merge-summaries", *map(str, logs), "--json"])
    record = json.loads(merged.stdout.splitlines()[-1])
    assert merged.exit_code == EXIT_PARTIAL and record["mapped"] == 5 and record["failed"] == 1
    assert record["missing_ranks"] == [] and record["failures"][0]["input"].endswith("bad.png")
    (parts / "s3.png").unlink()                                                     # as if stopped before it
    before = (parts / "s0.png").stat().st_mtime_ns
    res = run(src, "--out", parts, "--skip-existing", "--json", "-q")
    summary = json.loads(res.stdout.splitlines()[-1])
    assert res.exit_code == 0, res.output                # only bad.png failed: unreadable on every restart
    assert (summary["mapped"], summary["skipped"], summary["failed"]) == (1, 4, 1)
    assert (parts / "s3.png").read_bytes() == (whole / "s3.png").read_bytes()
    assert (parts / "s0.png").stat().st_mtime_ns == before
    assert run(src, "--out", parts, "--skip-existing", "--overwrite").exit_code == EXIT_USAGE


def test_preprocess_command_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x00" * 10)
    assert run(bad, "--out", tmp_path / "o", "-q").exit_code == EXIT_INPUT
    assert run(tmp_path / "missing.png", "--out", tmp_path / "o").exit_code == EXIT_INPUT
    good = tmp_path / "good.png"
    square().save(good)
    res = run(good, "--kind", "hed", "--out", tmp_path / "o")
    assert res.exit_code == EXIT_CHECKPOINT and "no model-based maps" in res.output
    assert run(good, "--kind", "blur", "--out", tmp_path / "o").exit_code == EXIT_USAGE
    assert run(good, "--out", tmp_path / "one.png", "-q").exit_code == 0     # one input: --out may name the file
    assert Image.open(tmp_path / "one.png").size == (64, 64)


def test_job_loop_makes_the_map_of_the_first_image_at_the_model_size(tmp_path):
    from i2i.diffusion.jobs import JobRun, JobSchema, build_jobs, make_maps, prepare
    from i2i.progress import Reporter

    path = tmp_path / "sq.png"
    square().save(path)
    schema = JobSchema(("structure", "appearance"))
    jobs = build_jobs(schema, ["a square"], {"structure": [str(path)], "appearance": [str(path)]}, None,
                      {"num_images": 1}, 0)
    run = JobRun(schema, jobs, tmp_path / "out", preprocess="canny", map_size=lambda model: model["size"])
    ready, _ = prepare(run, Reporter(quiet=True))
    assert np.array_equal(np.asarray(ready[0][1]["structure"]), np.asarray(square()))   # no map before the model
    make_maps(run, {"size": 32}, ready)
    images = ready[0][1]
    assert np.array_equal(np.asarray(images["structure"]), np.asarray(condition_map(square(), "canny", 32)))
    assert np.array_equal(np.asarray(images["appearance"]), np.asarray(square()))      # only the first image
    with pytest.raises(CheckpointError):                                               # refused before any model
        prepare(JobRun(schema, jobs, tmp_path / "out", preprocess="depth"), Reporter(quiet=True))


@pytest.mark.parametrize("command, image_flag", [("freecontrol", "--condition"), ("ctrlx", "--structure")])
def test_diffusion_commands_make_the_map_at_the_demo_model_size(command, image_flag, tmp_path, monkeypatch):
    from i2i.diffusion import jobs

    seen = []

    def load_and_map_only(run, load, generate, reporter):       # the real loop up to the model call
        ready, _ = jobs.prepare(run, reporter)
        jobs.make_maps(run, load(), ready)
        seen.extend(images[run.schema.images[0]] for _, images, _ in ready)

    monkeypatch.setattr(jobs, "run_jobs", load_and_map_only)
    path = tmp_path / "sq.png"
    square(size=128).save(path)
    res = CliRunner().invoke(app, [command, "--prompt", "a square", image_flag, str(path), "--preprocess", "invert",
                                   "--out", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.asarray(seen[0]), 255 - np.asarray(square(size=128).resize((64, 64), Image.LANCZOS)))
    res = CliRunner().invoke(app, [command, "--prompt", "a square", image_flag, str(path), "--preprocess", "hed",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == EXIT_CHECKPOINT and "hed" in res.output


def test_batch_stops_on_a_full_disk_and_checks_resolution_first(tmp_path, monkeypatch):
    """A full disk stops the batch at its first failed write (exit 6), as translate does; a bad --resolution is
    one usage error before any work, not a failure of every input; an abandoned temporary file is removed."""
    import errno

    import i2i.images
    import i2i.preprocess.maps
    from i2i.errors import OutputError
    from i2i.preprocess.files import preprocess_files

    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        square().save(src / f"s{i}.png")
    (src / "bad.png").write_bytes(b"not an image")
    res = run(src, "--out", tmp_path / "o", "--resolution", 0, "-q")
    assert res.exit_code == EXIT_USAGE and "--resolution" in res.output and not (tmp_path / "o").exists()

    calls = []
    real_map = i2i.preprocess.maps.condition_map
    monkeypatch.setattr(i2i.preprocess.maps, "condition_map", lambda *a: calls.append(a) or real_map(*a))

    def no_space(picture, target, overwrite=False):
        raise OutputError(f"{target}: cannot write (No space left on device)") from OSError(errno.ENOSPC, "full")

    with monkeypatch.context() as m:
        m.setattr(i2i.images, "save_image", no_space)
        with pytest.raises(OutputError, match="No space left"):
            preprocess_files([src], out=tmp_path / "full")
    assert [c[0].name for c in calls] == ["bad.png", "s0.png"]      # s1-s3 not computed for nothing

    (tmp_path / "maps").mkdir()
    stale = tmp_path / "maps" / ".s1.png.0123abcd.tmp"
    stale.write_bytes(b"partial")
    result = preprocess_files([src], out=tmp_path / "maps", skip_existing=True)
    assert len(result.written) == 4 and not stale.exists()
