"""Batches at scale: shares of the inputs, --skip-existing restarts, per-rank summaries and their merge.

The process tests run the real ``i2i`` command in subprocesses over a nested folder with two broken files, with a
tiny generator saved in the test."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from i2i.cli.app import app
from i2i.errors import EXIT_OUTPUT, EXIT_PARTIAL, PartialFailure, UsageError
from i2i.images import remove_stale_temps
from i2i.progress import Reporter
from i2i.shard import Shard, current_shard, parse_shard
from i2i.summary import BatchSummary, merge_summaries

BROKEN = ("a/broken.png", "b/c/empty.jpg")


# ---- shares -------------------------------------------------------------------------------------------------------

def test_shares_are_disjoint_and_cover_every_item():
    items = list(range(11))
    shares = [Shard(k, 3).take(items) for k in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(sum(shares, [])) == items
    assert Shard().take(items) == items


def test_the_share_comes_from_the_launcher_the_flag_or_both():
    assert current_shard(None, {}) == Shard(0, 1)
    assert current_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    assert current_shard("2/3", {}) == Shard(2, 3)
    # an array task of a 2-process launch: share 2 of 3 split over the two ranks
    both = [current_shard(f"{k}/3", {"RANK": str(r), "WORLD_SIZE": "2"}) for k in range(3) for r in range(2)]
    assert sorted(s.index for s in both) == list(range(6)) and {s.count for s in both} == {6}
    # share K covers the same items whatever the number of ranks that run it
    items = list(range(40))
    for k in range(3):
        alone = current_shard(f"{k}/3", {}).take(items)
        for world in (2, 3):
            ranks = [current_shard(f"{k}/3", {"RANK": str(r), "WORLD_SIZE": str(world)}) for r in range(world)]
            assert sorted(i for shard in ranks for i in shard.take(items)) == alone
    # scheduler variables are not read on their own: a task must ask for its share
    assert current_shard(None, {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(0, 1)


@pytest.mark.parametrize("text", ["2/2", "1/0", "a/b", "3", "-1/2", "1/2/3", "", " ", "\u00b2/3"])
def test_bad_shards_are_usage_errors(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)


def test_bad_launcher_variables_are_usage_errors():
    with pytest.raises(UsageError, match="RANK=2 is not within WORLD_SIZE=2"):
        current_shard(None, {"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(UsageError, match="whole numbers"):
        current_shard(None, {"RANK": "x"})
    with pytest.raises(UsageError, match="whole numbers"):
        current_shard(None, {"RANK": "\u00b2", "WORLD_SIZE": "3"})
    with pytest.raises(UsageError, match="WORLD_SIZE=2 is set but RANK is not"):
        current_shard(None, {"WORLD_SIZE": "2"})
    with pytest.raises(UsageError, match="--shard"):
        current_shard("", {})                                  # an unset variable in --shard "$SHARD"
    assert current_shard(None, {"WORLD_SIZE": "1"}) == Shard(0, 1)


# ---- temporary files and summaries --------------------------------------------------------------------------------

def test_only_the_targets_stale_temporary_files_are_removed(tmp_path):
    names = [".a.png.0123abcd.tmp", ".b.png.0123abcd.tmp", ".a.png.tmp", "a.png.0123abcd.tmp", "c.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_temps([tmp_path / "a.png", tmp_path / "missing" / "d.png"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[1:])


def summary(rank, world, done, skipped=0, failures=()):
    return BatchSummary("cyclegan translate", Shard(rank, world), 10, 5, done, skipped, list(failures)).record()


def test_merged_summary_adds_the_ranks_and_a_restart_replaces_its_rank():
    records = [summary(0, 2, 2, failures=[("x.png", "x.png: empty file")]), summary(1, 2, 1),
               summary(1, 2, 1, skipped=4)]                    # rank 1 restarted with --skip-existing
    merged = merge_summaries(records)
    assert (merged["translated"], merged["skipped"], merged["failed"], merged["inputs"]) == (3, 4, 1, 10)
    assert merged["ranks"] == [0, 1] and merged["missing_ranks"] == []
    assert merged["failures"] == [{"input": "x.png", "error": "x.png: empty file"}]
    assert merge_summaries(records[:1])["missing_ranks"] == [1]
    with pytest.raises(UsageError, match="different jobs"):
        merge_summaries([summary(0, 2, 1), summary(1, 3, 1)])


def test_a_restart_counts_by_time_whatever_the_file_order_and_out_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = BatchSummary("x", Shard(0, 1), 4, 4, 2, 0, [("a.png", "a.png: cannot write")], out="o",
                         finished="2026-12-07T10:00:00Z").record()
    retry = BatchSummary("x", Shard(0, 1), 4, 4, 1, 2, [], out="o", finished="2026-12-07T11:00:00Z").record()
    assert merge_summaries([retry, first])["failures"] == []                # shard-0-retry.jsonl sorts first
    assert first["out"] == str(tmp_path / "o")                             # relative and absolute --out agree


@pytest.mark.parametrize("change, problem", [
    ({"extra": 1}, "unknown field(s) extra"),
    ({"skipped": -1}, '"skipped" must be an integer >= 0'),
    ({"translated": 7}, "8 inputs done, skipped or failed of 5"),
    ({"inputs": 11}, '"inputs" 11 is more than "total_inputs" 10'),
])
def test_summaries_no_command_writes_are_refused(change, problem):
    with pytest.raises(UsageError, match=re.escape(problem)):
        merge_summaries([{**summary(0, 1, 1, skipped=1), **change}])


def test_merge_summaries_command_exit_codes(tmp_path):
    def write(name, *records):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in ({"input": "a.png", "status": "ok"}, *records)))
        return str(path)

    runner = CliRunner()
    ok = runner.invoke(app, ["merge-summaries", write("0.jsonl", summary(0, 2, 5)), write("1.jsonl", summary(1, 2, 5)),
                             "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["translated"] == 10
    missing = runner.invoke(app, ["merge-summaries", str(tmp_path / "0.jsonl")])
    assert missing.exit_code == 3 and "rank(s) 1 of 2 left no summary" in missing.output
    failed = runner.invoke(app, ["merge-summaries", str(tmp_path / "0.jsonl"),
                                 write("f.jsonl", summary(1, 2, 4, failures=[("y.png", "y.png: truncated")]))])
    assert failed.exit_code == 1 and "y.png: truncated" in failed.output
    assert runner.invoke(app, ["merge-summaries", write("none.jsonl")]).exit_code == 3


# ---- the diffusion job loop (library level, a stand-in method) ----------------------------------------------------

def run_fake_jobs(tmp_path, calls, **options):
    from i2i.diffusion.jobs import JobResult, JobRun, JobSchema, build_jobs, run_jobs

    condition = tmp_path / "cond.png"
    if not condition.exists():
        Image.new("RGB", (8, 8), "white").save(condition)
    schema = JobSchema(("condition",))
    jobs = build_jobs(schema, ["a", "b", "c", "d"], {"condition": [str(condition)]}, None, {"num_images": 1}, 0)

    def generate(model, job, images):
        calls.append(job["index"])
        return JobResult([Image.new("RGB", (8, 8), (job["seed"] * 40 % 256, 0, 0))])

    return run_jobs(JobRun(schema, jobs, tmp_path / "out", **options), lambda: "model", generate,
                    Reporter(quiet=True, json_mode=True))


def test_job_loop_skips_existing_outputs_and_refuses_them_otherwise(tmp_path, monkeypatch, capsys):
    calls = []
    first = run_fake_jobs(tmp_path, calls)
    files = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert first.done == 4 and len(files) == 4
    victim = sorted(files)[2]
    (tmp_path / "out" / victim).unlink()
    (tmp_path / "out" / f".{victim}.0123abcd.tmp").write_bytes(b"half")   # left by a killed writer
    calls.clear()
    capsys.readouterr()
    again = run_fake_jobs(tmp_path, calls, skip_existing=True, report_summary=True, command="fake")
    assert calls == [2] and (again.done, again.skipped, again.failures) == (1, 3, [])
    assert summaries(capsys.readouterr().out) == [again.record()] and again.record()["generated"] == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == files
    with pytest.raises(PartialFailure, match="4 of 4 job") as every:
        run_fake_jobs(tmp_path, calls)                         # without the flag an existing output is an error
    assert every.value.exit_code == EXIT_OUTPUT                # nothing written, every output there: 6, not 1
    (tmp_path / "out" / victim).unlink()
    with pytest.raises(PartialFailure, match="3 of 4 job") as some:
        run_fake_jobs(tmp_path, calls)
    assert some.value.exit_code == EXIT_PARTIAL
    with pytest.raises(UsageError, match="cannot be used together"):
        run_fake_jobs(tmp_path, calls, skip_existing=True, overwrite=True)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    calls.clear()
    shared = run_fake_jobs(tmp_path, calls, overwrite=True)
    assert calls == [1, 3] and (shared.shard, shared.inputs, shared.total_inputs) == (Shard(1, 2), 2, 4)


def test_skip_existing_finishes_a_job_whose_images_are_partly_written(tmp_path, capsys):
    from i2i.diffusion.jobs import JobResult, JobRun, JobSchema, build_jobs, run_jobs

    schema = JobSchema(())
    jobs = build_jobs(schema, ["a"], {}, None, {"num_images": 3}, 0)
    calls = []

    def generate(model, job, images):
        calls.append(job["index"])
        return JobResult([Image.new("RGB", (8, 8), (60 * k, 0, 0)) for k in range(3)])

    def go(**options):
        return run_jobs(JobRun(schema, jobs, tmp_path / "out", **options), lambda: "model", generate,
                        Reporter(quiet=True, json_mode=True))

    go()
    files = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    first, *rest = sorted(files)
    for name in rest:
        (tmp_path / "out" / name).unlink()
    (tmp_path / "out" / first).write_bytes(b"kept")            # not rewritten: existing outputs are done
    capsys.readouterr()
    again = go(skip_existing=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in lines] == ["skipped", "ok", "ok"]    # a script counts what this run wrote
    assert again.done == 1 and len(calls) == 2
    assert {p.name for p in (tmp_path / "out").iterdir()} == set(files)
    assert (tmp_path / "out" / first).read_bytes() == b"kept"
    assert all((tmp_path / "out" / name).read_bytes() == files[name] for name in rest)
    assert go(skip_existing=True).skipped == 1 and len(calls) == 2


# ---- translate in real processes ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A nested folder of 24 small images and two broken files, a tiny generator, and what one process writes."""
    import torch

    from i2i.cyclegan.checkpoint import save_generator
    from i2i.cyclegan.config import GeneratorConfig
    from i2i.cyclegan.networks import define_G

    root = tmp_path_factory.mktemp("batch")
    torch.manual_seed(0)
    cfg = GeneratorConfig(arch="resnet_6blocks", ngf=16)
    save_generator(root / "g.safetensors", define_G(cfg), cfg)
    rng = np.random.default_rng(0)
    for i in range(24):
        folder = root / "in" / ("a" if i % 3 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (96, 112, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    (root / "in" / BROKEN[0]).write_bytes(b"not an image")
    (root / "in" / BROKEN[1]).write_bytes(b"")
    reference = translate(root, "ref")
    assert reference.returncode == 1, reference.stderr
    return root


def translate(root, out, *args, env=None, wait=True):
    cmd = [sys.executable, "-m", "i2i", "cyclegan", "translate", str(root / "in"), "-c", str(root / "g.safetensors"),
           "-o", str(root / out), "--json", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    if not wait:
        return proc
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def summaries(stdout):
    return [r for r in map(json.loads, stdout.splitlines()) if r.get("kind") == "summary"]


def test_two_processes_write_exactly_what_one_writes(batch):
    procs = [translate(batch, "two", env={"RANK": str(r), "WORLD_SIZE": "2"}, wait=False) for r in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [code for _, _, code in results] == [1, 1]             # each rank met one of the broken files
    assert tree(batch / "two") == tree(batch / "ref") and len(tree(batch / "ref")) == 24
    stderr = "".join(err for _, err, _ in results)
    assert all(stderr.count(str(batch / "in" / name) + ":") == 1 for name in BROKEN)
    merged = merge_summaries(sum((summaries(out) for out, _, _ in results), []))
    assert (merged["translated"], merged["failed"], merged["missing_ranks"]) == (24, 2, [])


def test_killed_job_restarted_with_skip_existing_ends_identical(batch):
    proc = translate(batch, "killed", "--num-workers", "0", wait=False)   # no decoding workers left orphaned
    deadline = time.monotonic() + 120
    while not list((batch / "killed").rglob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    written = [p for p in (batch / "killed").rglob("*.png") if not p.name.startswith(".")]
    assert 0 < len(written) < 24, "the job was not stopped mid-run"
    missing = next(p for p in (batch / "ref").rglob("*.png") if not (batch / "killed" / p.relative_to(batch / "ref"))
                   .exists())
    stale = batch / "killed" / missing.relative_to(batch / "ref")
    stale.parent.mkdir(parents=True, exist_ok=True)
    (stale.parent / f".{stale.name}.0123abcd.tmp").write_bytes(b"half an image")   # as a kill mid-write leaves

    again = translate(batch, "killed", "--skip-existing")
    assert again.returncode == 0, again.stderr         # finished: the broken files are named, not a failed job
    assert tree(batch / "killed") == tree(batch / "ref")           # byte-identical, no temporary file left
    assert all(again.stderr.count(str(batch / "in" / name) + ":") == 1 for name in BROKEN)
    assert f"skipped {len(written)} existing" in again.stderr and "already exists" not in again.stderr
    (record,) = summaries(again.stdout)
    assert (record["translated"], record["skipped"], record["failed"]) == (24 - len(written), len(written), 2)



def test_everything_done_exits_0_and_overwrite_excludes_skip(batch, tmp_path):
    runner = CliRunner()
    good = [str(p) for p in sorted((batch / "in" / "a").glob("0*.png"))]
    args = ["cyclegan", "translate", *good, "-c", str(batch / "g.safetensors"), "-o", str(batch / "ref" / "a")]
    done = runner.invoke(app, [*args, "--skip-existing"])
    assert done.exit_code == 0 and f"skipped {len(good)} existing" in done.output
    both = runner.invoke(app, [*args, "--skip-existing", "--overwrite"])
    assert both.exit_code == 2 and "cannot be used together" in both.output


def test_a_share_of_one_failing_input_still_writes_its_summary(batch, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.png").write_bytes(b"not an image")
    shutil.copy(next((batch / "in" / "a").glob("*.png")), one / "b.png")
    runner = CliRunner()
    args = ["cyclegan", "translate", str(one), "-c", str(batch / "g.safetensors"), "-o", str(tmp_path / "o"),
            "--json", "-q"]
    res = runner.invoke(app, [*args, "--shard", "0/2"])
    assert res.exit_code == 3 and summaries(res.stdout)[0]["failed"] == 1, res.output     # the summary is written
    again = runner.invoke(app, [*args, "--shard", "0/2", "--skip-existing"])
    assert again.exit_code == 0, again.output         # the restart loop stops: the unreadable file stays unreadable
    other = runner.invoke(app, [*args, "--shard", "1/2"])
    merged = merge_summaries(summaries(res.stdout) + summaries(other.stdout))
    assert (merged["translated"], merged["failed"], merged["missing_ranks"]) == (1, 1, [])


def test_a_share_of_one_failing_job_still_writes_its_summary(tmp_path, monkeypatch, capsys):
    from i2i.diffusion.jobs import JobResult, JobRun, JobSchema, build_jobs, run_jobs

    schema = JobSchema(("condition",))
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    jobs = build_jobs(schema, ["a", "b"], {"condition": [str(tmp_path / "gone.png"), str(tmp_path / "ok.png")]},
                      None, {"num_images": 1}, 0)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = JobRun(schema, jobs, tmp_path / "out", report_summary=True, command="fake")
    with pytest.raises(PartialFailure) as failed:
        run_jobs(run, lambda: pytest.fail("no job can run"), lambda *a: JobResult([]), Reporter(quiet=True,
                                                                                                 json_mode=True))
    assert failed.value.exit_code == 3                     # its own code: nothing written, every job unreadable
    assert summaries(capsys.readouterr().out)[0]["failed"] == 1


def test_outputs_written_beside_their_inputs_are_not_read_back_as_inputs(batch, tmp_path):
    folder = tmp_path / "ip"
    folder.mkdir()
    for image in (batch / "in" / "a").glob("[0-9][0-9].png"):           # the readable ones
        shutil.copy(image, folder)
    runner = CliRunner()
    args = ["cyclegan", "translate", str(folder), "-c", str(batch / "g.safetensors"), "-o", str(folder),
            "--suffix", "_sq", "-q", "--json"]
    first, second = (runner.invoke(app, [*args, "--shard", f"{k}/2"]) for k in range(2))
    assert first.exit_code == 0 and second.exit_code == 0, second.output        # share 1 saw share 0's outputs
    assert sum(s["inputs"] for s in summaries(first.stdout) + summaries(second.stdout)) == 16
    again = runner.invoke(app, [*args, "--skip-existing"])
    assert again.exit_code == 0 and summaries(again.stdout)[0]["skipped"] == 16, again.output
    assert len(list(folder.glob("*_sq.png"))) == 16 and not list(folder.glob("*_sq_sq.png"))
    named = sorted(folder.glob("*_sq.png"))[0]              # named on the command line, it stays an input
    before = named.read_bytes()
    res = runner.invoke(app, ["cyclegan", "translate", str(named.with_name(named.name.replace("_sq", ""))),
                              str(named), "-c", str(batch / "g.safetensors"), "-o", str(folder), "--suffix", "_sq",
                              "--overwrite"])
    assert res.exit_code == 2 and "is an input" in res.output and named.read_bytes() == before


def test_a_full_disk_stops_the_job_loop_at_the_first_output(tmp_path, monkeypatch):
    import errno

    import i2i.images
    from i2i.errors import OutputError

    def no_space(picture, target, overwrite=False):
        raise OutputError(f"{target}: cannot write (No space left on device)") from OSError(errno.ENOSPC, "full")

    monkeypatch.setattr(i2i.images, "save_image", no_space)
    calls = []
    with pytest.raises(OutputError, match="No space left"):
        run_fake_jobs(tmp_path, calls)
    assert calls == [0]                                        # jobs 1-3 were not generated for nothing
