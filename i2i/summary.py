"""The end-of-batch summary of one process (a JSON line with ``--json``) and the merge of every rank's summary.

A summary record looks like ``{"kind": "summary", "command": "cyclegan translate", "rank": 0, "world_size": 2,
"total_inputs": 100, "inputs": 50, "translated": 45, "skipped": 3, "failed": 2, "failures": [{"input": ...,
"error": ...}], "out": "/abs/path/out", "finished": "2026-12-07T15:03:12Z"}``. :func:`merge_summaries` adds the
counts of all ranks into one record of the same shape, and names the ranks that left none (killed, or still
running).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i2i.errors import InputError, UsageError
from i2i.shard import Shard

SUMMARY_KIND = "summary"
_NOT_COUNTS = {"rank", "world_size", "total_inputs"}
VERBS = ("translated", "generated", "mapped")                  # the done count's name, per command family
_FIELDS = {"kind", "command", "rank", "world_size", "total_inputs", "inputs", "skipped", "failed", "failures", "out",
           "finished", *VERBS}


@dataclass
class BatchSummary:
    """What one process of a batch did with its share: ``done`` written, ``skipped`` (outputs that existed, with
    ``--skip-existing``) and ``failures`` (input, reason). ``verb`` names the done count: translated, generated."""

    command: str
    shard: Shard
    total_inputs: int
    inputs: int
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    verb: str = "translated"
    out: str | None = None
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def record(self) -> dict[str, Any]:
        """The JSON summary line (see the module docstring)."""
        record: dict[str, Any] = {"kind": SUMMARY_KIND, "command": self.command, "rank": self.shard.index,
                                  "world_size": self.shard.count, "total_inputs": self.total_inputs,
                                  "inputs": self.inputs, self.verb: self.done, "skipped": self.skipped,
                                  "failed": len(self.failures),
                                  "failures": [{"input": name, "error": why} for name, why in self.failures]}
        if self.out is not None:
            record["out"] = str(Path(self.out).resolve())     # where the job wrote, from any working folder
        record["finished"] = self.finished
        return record

    def line(self) -> str:
        """One human line: ``translated 5, skipped 9,845 existing, failed 2 of 9,852 input(s) into out``."""
        parts = [f"{self.verb} {self.done:,}"]
        if self.skipped:
            parts.append(f"skipped {self.skipped:,} existing")
        if self.failures:
            parts.append(f"failed {len(self.failures):,}")
        text = ", ".join(parts) + f" of {self.inputs:,} input(s)" + (f" into {self.out}" if self.out else "")
        if self.shard.count > 1:
            text = f"share {self.shard} ({self.total_inputs:,} input(s) in all): " + text
        return text


def read_summaries(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The summary records in JSON-lines files (other lines, such as per-image records, are passed over). A file
    that is not text, or a summary line whose fields are not what a command writes, is an :class:`InputError`."""
    records = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a JSON-lines file (not UTF-8 text)") from exc
        for number, line in enumerate(text.splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("kind") == SUMMARY_KIND:
                problem = _invalid(record)
                if problem:
                    raise InputError(f"{path}:{number}: not a summary a command wrote ({problem})")
                records.append(record)
    if not records:
        raise InputError("no summary lines found in " + ", ".join(str(p) for p in paths)
                         + " (they are written by a command run with --json)")
    return records


def _invalid(record: dict[str, Any]) -> str | None:
    """What is wrong with a summary record's fields, or None."""
    def count(key: str, low: int = 0) -> bool:
        value = record.get(key)
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    unknown = sorted(set(record) - _FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(unknown)}"
    if not isinstance(record.get("command"), str):
        return '"command" must be a string'
    verbs = [v for v in VERBS if v in record]
    for key, low in (("rank", 0), ("world_size", 1), ("total_inputs", 0), ("inputs", 0), ("failed", 0),
                     *((key, 0) for key in ("skipped", *verbs) if key in record)):
        if not count(key, low):
            return f'"{key}" must be an integer >= {low}'
    if record["rank"] >= record["world_size"]:
        return f'"rank" {record["rank"]} must be below "world_size" {record["world_size"]}'
    if record["inputs"] > record["total_inputs"]:
        return f'"inputs" {record["inputs"]} is more than "total_inputs" {record["total_inputs"]}'
    accounted = sum(record.get(key, 0) for key in ("skipped", "failed", *verbs))
    if accounted > record["inputs"]:
        return f"{accounted} inputs done, skipped or failed of {record['inputs']}"
    failures = record.get("failures", [])
    if not isinstance(failures, list) or not all(isinstance(f, dict) for f in failures):
        return '"failures" must be a list of {"input": ..., "error": ...}'
    if not isinstance(record.get("finished", ""), str):
        return '"finished" must be a time stamp string'
    return None


def merge_summaries(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One summary for the whole job: the counts of every rank added, the failures listed, and ``missing_ranks``.

    A rank's latest record counts (by its ``finished`` time, else the order given: a restarted rank's summary
    replaces the earlier one, in whatever order the files come; its ``skipped`` then counts what the first run
    wrote). Records of different jobs (command, world size, input count or output) cannot be merged
    (:class:`UsageError`).
    """
    records = list(records)
    for record in records:
        problem = _invalid(record)
        if problem:
            raise UsageError(f"not a summary a command wrote ({problem})")
    jobs = {(r["command"], r["world_size"], r["total_inputs"], r.get("out")) for r in records}
    if len(jobs) != 1:
        raise UsageError("the summaries come from different jobs: " + "; ".join(
            f"{command} over {world} process(es), {total} input(s)" + (f" into {out}" if out else "")
            for command, world, total, out in sorted(jobs, key=str)))
    (command, world, _, _), = jobs
    last: dict[int, dict[str, Any]] = {}
    for record in records:
        earlier = last.get(record["rank"])
        if earlier is None or record.get("finished", "") >= earlier.get("finished", ""):
            last[record["rank"]] = record
    merged: dict[str, Any] = {"kind": SUMMARY_KIND, "command": command, "world_size": world,
                              "ranks": sorted(last), "missing_ranks": sorted(set(range(world)) - set(last))}
    for record in last.values():
        merged.setdefault("total_inputs", record.get("total_inputs"))
        merged.setdefault("out", record.get("out"))
        for key, value in record.items():
            if isinstance(value, int) and not isinstance(value, bool) and key not in _NOT_COUNTS:
                merged[key] = merged.get(key, 0) + value
    merged["failures"] = sorted((f for r in last.values() for f in r.get("failures", [])),
                                key=lambda f: str(f.get("input")))
    return merged
