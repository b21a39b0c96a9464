"""The demo model's held-out protocol (issue 24 item 2, docs/demo-protocol.md), run on one model folder:

    python examples/demo/protocol.py --model DIR --split heldout --methods freecontrol,ctrlx --out results.json

Every case of the split (:mod:`i2i.demo.protocol`) is generated through the library's pipelines with their default
settings (the model folder's ``i2i_<method>.json`` applies, as it does for the CLI) and read off the pixels
(:func:`i2i.demo.protocol.score`). FreeControl: each case as the CLI makes it, and for structure cases the unguided
sample (plain sampling with the same prompt, seed and FreeControl's sampling settings) and the IoU an output reaches
by chance (:meth:`i2i.demo.protocol.Case.chance_iou`); appearance cases pass their appearance image. Ctrl-X: the
same cases, and the time of one Ctrl-X image against one plain sample
(:class:`i2i.generate.pipeline.GeneratePipeline`, the same number of steps), timed alternately, median of
``--repeats``, for a structure case and an appearance case; the worse ratio counts.

Writes a JSON file (every case's row, the summary, the target checks, the timing) and prints a Markdown table of the
targets (each number with its 95% interval over the cases, the target, pass or fail). Tune only on ``--split
tuning``, ``tuning-b`` or ``tuning-c``; quote only ``--split heldout`` numbers. While tuning, ``--set METHOD.KEY=VALUE``
(repeatable) replaces one of the model folder's settings for the run (typed and checked by the method's config;
recorded in the JSON and the table's title); it is refused with ``--split heldout``, whose numbers are measured with
the model folder's settings only.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional

import typer

from i2i.demo.protocol import SPLITS, Case, cases, check_settings, score
from i2i.demo.targets import METHODS, checks, markdown_table, summarise

Advance = Callable[..., None]


def _noop(*_: Any, **__: Any) -> None:
    return None


def _save(folder: Path | None, name: str, image) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{name}.png")


def unguided_config(config, plain):
    """Plain sampling's settings for FreeControl's unguided sample: FreeControl's steps, guidance scale, negative
    prompt and size (deterministic DDIM, as FreeControl samples), so it is FreeControl's unguided sibling."""
    return dataclasses.replace(plain.default_config(), num_inference_steps=config.num_inference_steps,
                               guidance_scale=config.guidance_scale, negative_prompt=config.negative_prompt, eta=0.0,
                               size=config.size)


def freecontrol_rows(pipe, plain, todo: list[Case], advance: Advance = _noop, images: Path | None = None,
                     config=None) -> list[dict[str, Any]]:
    """FreeControl on each case as the CLI makes it (``config``, default the model's settings; no unguided
    sibling), the appearance image passed when the case has one; structure cases also read the unguided sample
    (``plain``, a :class:`~i2i.generate.pipeline.GeneratePipeline`, with the same prompt, seed and
    :func:`unguided_config`) and record the case's chance IoU. ``images``: a folder to save the outputs in
    (``<case>-freecontrol.png``, ``<case>-unguided.png``)."""
    size, rows = pipe.default_size, []
    config = config or pipe.default_config()
    plain_cfg = unguided_config(config, plain)
    for case in todo:
        t0 = time.perf_counter()
        look = case.appearance_image(size)
        image = pipe(case.prompt, case.sketch_image(size), config, seed=case.seed, appearance=look,
                     unguided=False).images[0]
        _save(images, f"{case.name}-freecontrol", image)
        row = {**case.as_dict(), "method": "freecontrol", **score(case, image)}
        if look is None:
            unguided = plain(case.prompt, plain_cfg, seed=case.seed).images[0]
            _save(images, f"{case.name}-unguided", unguided)
            sibling = score(case, unguided)
            row.update(unguided_iou=sibling["iou"], unguided_colour=sibling["read_colour"],
                       unguided_shape=sibling["read_shape"], chance_iou=case.chance_iou())
        rows.append({**row, "seconds": round(time.perf_counter() - t0, 2)})
        advance(1, status=f"{case.name} IoU {row['iou']:.2f} {row['read_colour']}")
    return rows


def ctrlx_call(pipe, case: Case, config=None):
    """One Ctrl-X image for ``case`` as the CLI makes it (``config``, default the model's settings; branch pictures
    not decoded)."""
    size = pipe.default_size
    return pipe(case.prompt, case.sketch_image(size), case.appearance_image(size), config, seed=case.seed,
                decode_branches=False)


def ctrlx_rows(pipe, todo: list[Case], advance: Advance = _noop, images: Path | None = None, config=None
               ) -> list[dict[str, Any]]:
    """Ctrl-X on each case (``config``, default the model's settings): the sketch as structure, the appearance
    image when the case has one (``images``: a folder to save the outputs in, ``<case>-ctrlx.png``)."""
    rows = []
    for case in todo:
        t0 = time.perf_counter()
        image = ctrlx_call(pipe, case, config).images[0]
        _save(images, f"{case.name}-ctrlx", image)
        row = {**case.as_dict(), "method": "ctrlx", **score(case, image)}
        rows.append({**row, "seconds": round(time.perf_counter() - t0, 2)})
        advance(1, status=f"{case.name} IoU {row['iou']:.2f} {row['read_colour']}")
    return rows


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ctrlx_timing(pipe, plain, todo: list[Case], repeats: int = 5, advance: Advance = _noop, config=None
                 ) -> dict[str, Any]:
    """Seconds of one Ctrl-X image (``config``, default the model's settings) and of one plain sample with the
    same prompt, seed and number of steps, timed alternately after one untimed call each; median of ``repeats``,
    for the first case of each kind in ``todo``. ``ratio``: the larger Ctrl-X / plain ratio."""
    config = config or pipe.default_config()
    steps = config.num_inference_steps
    plain_cfg = dataclasses.replace(plain.default_config(), num_inference_steps=steps)
    out: dict[str, Any] = {"steps": steps, "repeats": repeats}
    for kind in ("structure", "appearance"):
        case = next((c for c in todo if c.kind == kind), None)
        if case is None:
            continue
        calls = (lambda: ctrlx_call(pipe, case, config), lambda: plain(case.prompt, plain_cfg, seed=case.seed))
        for call in calls:
            call()                                            # warm-up (lazy allocations, caches)
        times: list[list[float]] = [[], []]
        for _ in range(repeats):
            for k, call in enumerate(calls):
                times[k].append(_seconds(call))
            advance(1, status=f"timing {case.name}")
        ctrlx_s, plain_s = statistics.median(times[0]), statistics.median(times[1])
        out[kind] = {"case": case.name, "ctrlx_s": round(ctrlx_s, 4), "plain_s": round(plain_s, 4),
                     "ratio": round(ctrlx_s / plain_s, 3)}
    ratios = [out[k]["ratio"] for k in ("structure", "appearance") if k in out]
    out["ratio"] = max(ratios) if ratios else float("nan")
    return out


def method_specs(methods: tuple[str, ...] = (*METHODS, "generate")) -> dict[str, Any]:
    """The :class:`~i2i.diffusion.method.DiffusionMethod` of each of ``methods`` by name (``"generate"``: plain
    sampling)."""
    from i2i.ctrlx.config import CTRLX
    from i2i.freecontrol.config import FREECONTROL
    from i2i.generate.config import GENERATE

    specs = {"freecontrol": FREECONTROL, "ctrlx": CTRLX, "generate": GENERATE}
    return {m: specs[m] for m in methods}


def load(method: str, model: str, device: str):
    """The method's pipeline for ``model`` (``"generate"``: plain sampling)."""
    return method_specs((method,))[method].pipeline_class().from_pretrained(model, device=device)


def run_config(pipe, method: str, overrides: dict[str, dict[str, Any]] | None):
    """The settings ``method`` runs with: the model folder's (``pipe.default_config()``), ``overrides[method]``
    (from :func:`i2i.diffusion.overrides.parse_overrides`) applied and validated."""
    from i2i.diffusion.overrides import apply_overrides

    return apply_overrides(pipe.default_config(), (overrides or {}).get(method, {}), method_specs((method,))[method])


def run_protocol(model: str, split: str, methods: tuple[str, ...], limit: int = 0, repeats: int = 5,
                 device: str = "cpu", reporter=None, images: Path | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every measurement of ``split`` for ``methods`` on ``model``; ``limit`` keeps the first N cases of each kind
    (a smoke test); ``images``: a folder for the outputs; ``overrides``: settings that replace the model folder's
    for this run, per method (:func:`i2i.diffusion.overrides.parse_overrides`; refused on the held-out split).
    Returns the JSON-able result: rows, summary, checks, timing, the overrides and every method's settings,
    machine, seconds."""
    import torch

    from i2i.progress import Reporter

    check_settings(split, overrides)
    reporter = reporter or Reporter()
    todo = [c for c in cases(split) if not limit or c.index < limit]
    t0, rows, timing, settings = time.perf_counter(), [], None, {}
    total = len(todo) * len(methods) + (2 * repeats if "ctrlx" in methods else 0)
    plain = load("generate", model, device)
    with reporter.progress(total, f"protocol {split}") as advance:
        if "freecontrol" in methods:
            pipe = load("freecontrol", model, device)
            settings["freecontrol"] = config = run_config(pipe, "freecontrol", overrides)
            rows += freecontrol_rows(pipe, plain, todo, advance, images, config)
        if "ctrlx" in methods:
            pipe = load("ctrlx", model, device)
            settings["ctrlx"] = config = run_config(pipe, "ctrlx", overrides)
            rows += ctrlx_rows(pipe, todo, advance, images, config)
            timing = ctrlx_timing(pipe, plain, todo, repeats, advance, config)
    summary = summarise(rows, timing)
    return {"split": split, "model": str(model), "methods": list(methods), "limit": limit,
            "overrides": overrides or {}, "settings": {m: dataclasses.asdict(c) for m, c in settings.items()},
            "summary": summary, "checks": checks(summary), "timing": timing, "rows": rows,
            "seconds": round(time.perf_counter() - t0, 1),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "torch": torch.__version__}


def parse_methods(text: str) -> tuple[str, ...]:
    from i2i.errors import UsageError

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"--methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(METHODS)}")
    return methods


def parse_settings(texts: list[str], split: str, methods: tuple[str, ...], model: str) -> dict[str, dict[str, Any]]:
    """The ``--set METHOD.KEY=VALUE`` texts as per-method overrides, checked before any model loads: refused on
    the held-out split, keys and types checked against each method's config, values validated on top of
    ``model``'s recommended settings (a :class:`~i2i.errors.UsageError` for each problem)."""
    from i2i.diffusion.overrides import apply_overrides, parse_overrides

    check_settings(split, texts)
    specs = method_specs(methods)
    overrides = parse_overrides(texts, specs)
    for method, values in overrides.items():
        apply_overrides(specs[method].model_config(model), values, specs[method])
    return overrides


def title(split: str, overrides: dict[str, dict[str, Any]]) -> str:
    """The table's title: the split and the settings the run used."""
    from i2i.diffusion.overrides import describe_overrides

    used = f"settings set: {describe_overrides(overrides)}" if overrides else "the model folder's settings"
    return f"**Demo protocol, {split} split, {used}**"


def main(model: str = "", split: str = "tuning", methods: str = ",".join(METHODS), out: str = "",
         limit: int = 0, threads: int = 0, repeats: int = 5, device: str = "cpu", overwrite: bool = False,
         images: str = "",
         set_: Annotated[Optional[List[str]], typer.Option("--set", metavar="METHOD.KEY=VALUE")] = None) -> None:
    """Run the protocol's SPLIT (tuning, tuning-b, tuning-c or heldout) on MODEL (default: the bundled demo model) for
    METHODS (comma-separated: freecontrol, ctrlx), write the JSON to OUT (refused if it exists, unless --overwrite)
    and print the targets' table. LIMIT: only the first N cases of each kind (a smoke test); THREADS: torch CPU
    threads (0: torch's default); REPEATS: timed calls of each kind; IMAGES: a folder to save every output in. SET
    (tuning splits only, repeatable): METHOD.KEY=VALUE replaces one of the model folder's settings for this run,
    e.g. --set ctrlx.structure_schedule=0.4 --set freecontrol.bases.n_components=16 (KEY: a field of the method's
    config; recorded in the JSON and the table's title)."""
    from i2i.cli.common import quiet_libraries
    from i2i.demo.model import demo_model_path
    from i2i.errors import I2IError, OutputError, UsageError

    quiet_libraries()             # no loading bars or import notices of diffusers/transformers, as in the CLI
    model = model or str(demo_model_path())
    try:
        if split not in SPLITS:
            raise UsageError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
        chosen = parse_methods(methods)
        overrides = parse_settings(set_ or [], split, chosen, model)
        if limit < 0 or repeats < 1 or threads < 0:
            raise UsageError("--limit and --threads must not be negative, --repeats at least 1")
        if out and Path(out).exists() and not overwrite:
            raise OutputError(f"{out} already exists; pass --overwrite to replace it")
        if threads:
            import torch

            torch.set_num_threads(threads)
        result = run_protocol(model, split, chosen, limit, repeats, device, images=Path(images) if images else None,
                              overrides=overrides)
    except I2IError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(split, result["summary"], title(split, overrides)))
    print(f"\n{len(result['rows'])} cases in {result['seconds']} s ({result['machine']})")


if __name__ == "__main__":
    typer.run(main)
