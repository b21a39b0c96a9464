"""``i2i cyclegan eval``: how well a trained run translates.

- On an image folder (``testA``/``testB``): mean cycle L1 (A -> B -> A and B -> A -> B) and identity L1
  (G_B(A) vs A, G_A(B) vs B), on the [-1, 1] scale, at the training resolution (``resolution="train"``:
  resized as in training) or at original sizes. With ``metrics``: FID and KID (mean and std over subsets) of the
  translated images against the real target test folder (:mod:`i2i.metrics`), on the features of ``features``
  (Inception-v3 by default) or of a given extractor.
  A one-sided run (no G_B in its checkpoint) is evaluated A -> B only, without cycle/identity L1.
- On ``builtin:shapes``: the true counterpart of every test image is known, so we also measure accuracy: a
  circle translated A -> B must become a square of the same colour at the same place (and vice versa). The
  test images come from a different random stream than the training images.

Writes ``summary.json`` and ``grid.png`` (rows: real, translated, reconstructed) into the output folder; existing
ones are refused before any work unless ``overwrite``.
"""

from __future__ import annotations

import functools

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from i2i.cyclegan.checkpoint import latest_checkpoint, load_generator, resolve_generator_file
from i2i.cyclegan.config import SHAPES_EVAL_LIMIT, TrainConfig
from i2i.cyclegan.data import BUILTIN_SHAPES, list_images
from i2i.cyclegan.job_config import EvalConfig
from i2i.cyclegan.translator import translate_pil
from i2i.errors import CheckpointError, InputError, OutputError, UsageError
from i2i.images import image_to_tensor, load_image, output_folder, save_image, write_bytes_atomic
from i2i.progress import Reporter

if TYPE_CHECKING:
    from i2i.metrics.features import FeatureExtractor

# A translated shape counts as "in place" when its centroid is within this fraction of the image side.
POSITION_TOLERANCE = 0.08
# Translations scored here are rounded to the nearest grey level: the reference's truncation (what `translate`
# writes) would darken each pass by half a level on average and add that bias to the cycle L1.
EVAL_ROUNDING = "nearest"
# Test images of builtin:shapes use indices far from the training ones.
SHAPES_TEST_OFFSET = 10_000_000


def _scored_translation(G, cfg, img: Image.Image, device: Any, precision: str) -> Image.Image:
    """``img`` translated as the scores read it (rounded to the nearest grey level, :data:`EVAL_ROUNDING`)."""
    return translate_pil(G, cfg, img, device, precision=precision, rounding=EVAL_ROUNDING)


def _l1(a: Image.Image, b: Image.Image) -> float:
    return float((image_to_tensor(a) - image_to_tensor(b)).abs().mean())


def _grid(rows: list[list[Image.Image]], cell: int = 128) -> Image.Image:
    cols = max(len(r) for r in rows)
    grid = Image.new("RGB", (cols * cell, len(rows) * cell), (255, 255, 255))
    for y, row in enumerate(rows):
        for x, img in enumerate(row):
            thumb = img.convert("RGB")
            scale = min(cell / thumb.width, cell / thumb.height)
            size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
            # small images (e.g. 32 px shapes) are enlarged with hard pixel edges, large ones downsampled
            thumb = thumb.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS)
            grid.paste(thumb, (x * cell + (cell - thumb.width) // 2, y * cell + (cell - thumb.height) // 2))
    return grid


def default_eval_dir(run_dir: str | Path, best: bool = False) -> Path:
    """Where an evaluation goes by default: ``RUN/eval``, or ``RUN/eval-best`` for the best checkpoint."""
    return Path(run_dir) / ("eval-best" if best else "eval")


def _b_to_a_file(run_dir: Path, best: bool = False) -> Path | None:
    """The checkpoint's B -> A generator file, or None for a one-sided run (CUT, FastCUT)."""
    from i2i.cyclegan.checkpoint import checkpoint_folder

    ckpt = checkpoint_folder(run_dir, best) if run_dir.is_dir() else run_dir.parent
    return ckpt / "G_B.safetensors" if (ckpt / "G_B.safetensors").is_file() else None


def _generators(run_dir: Path, device: Any, best: bool = False) -> dict[str, tuple[Any, Any]]:
    """``{"AtoB": (G_A, cfg)}``, plus ``"BtoA"`` for two-sided runs (a one-sided run's checkpoint has no G_B)."""
    gens = {"AtoB": load_generator(resolve_generator_file(run_dir, "AtoB", best), device)}
    b_to_a = _b_to_a_file(run_dir, best)
    if b_to_a is not None:
        gens["BtoA"] = load_generator(b_to_a, device)
    return gens


def eval_size(config: EvalConfig, train_cfg: TrainConfig | None) -> tuple[str, int | None, str]:
    """How images are sized: (resolution label for the summary, side or width in px or None, how)."""
    if config.resolution == "original":
        return "original", None, "original sizes"
    if train_cfg is None:
        raise UsageError("the run has no config.json, so its training resolution is unknown: pass "
                         "--resolution original")
    pre = train_cfg.preprocess
    if pre in ("none", "crop"):
        return "train", None, f"original sizes (trained with --preprocess {pre}, i.e. at native scale)"
    if pre.startswith("scale_width"):
        return "train", train_cfg.crop_size, f"width {train_cfg.crop_size} px, aspect kept"
    return "train", train_cfg.crop_size, f"{train_cfg.crop_size}x{train_cfg.crop_size} px"


def _resize(img: Image.Image, size: int | None, keep_aspect: bool) -> Image.Image:
    if size is None:
        return img
    h = max(1, round(img.height * size / img.width)) if keep_aspect else size
    return img if img.size == (size, h) else img.resize((size, h), Image.Resampling.BICUBIC)


def _load_folder(folder: Path, mode: str, limit: int | None, size: int | None, keep_aspect: bool,
                 reporter: Reporter) -> list[tuple[Path, Image.Image]]:
    """Readable images of ``folder`` at the evaluation size; unreadable ones are reported and skipped."""
    images, paths = [], list_images(folder, limit)
    for path in paths:
        try:
            images.append((path, _resize(load_image(path, mode=mode), size, keep_aspect)))
        except InputError as exc:
            reporter.warn(f"skipping {exc}" if str(exc).startswith(str(path)) else f"skipping {path}: {exc}")
    if not images:                  # scores over no images would read as perfect (a cycle L1 of 0)
        raise InputError(f"{folder}: none of its {len(paths)} image file(s) could be read")
    return images


def evaluate(run_dir: str | Path, out_dir: str | Path | None = None, config: EvalConfig = EvalConfig(),
             device: Any = None, reporter: Reporter | None = None, overwrite: bool = False,
             extractor: "FeatureExtractor | None" = None) -> dict[str, Any]:
    """Evaluate the latest checkpoint of ``run_dir`` (``config.best``: its best one); returns the summary (also
    written as JSON to ``out_dir``, by default :func:`default_eval_dir`, as ``i2i cyclegan eval`` does).

    ``device``: None picks as the CLI does (CUDA if available, then MPS, then the CPU). ``extractor``: features for
    ``config.metrics`` (default: built from ``config.features``). Existing outputs are refused before any work
    unless ``overwrite``.
    """
    from i2i.device import resolve_device

    reporter = reporter or Reporter.library()
    run_dir = Path(run_dir)
    out_dir = default_eval_dir(run_dir, config.best) if out_dir is None else Path(out_dir)
    device = resolve_device(device) if device is None or isinstance(device, str) else device
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder (give a training run's --run-dir)")
    cfg_path = run_dir / "config.json"
    train_cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text())) if cfg_path.is_file() else None
    dataroot = config.dataroot or (train_cfg.dataroot if train_cfg else None)
    if dataroot is None:
        raise InputError(f"{run_dir}: no config.json; pass --dataroot")
    if config.metrics and dataroot == BUILTIN_SHAPES:
        raise UsageError("--metrics needs an image-folder dataset (builtin:shapes has its own accuracy metrics)")
    has_weights = config.best or latest_checkpoint(run_dir) is not None        # else the loading says what is missing
    if dataroot != BUILTIN_SHAPES and not config.metrics and has_weights and _b_to_a_file(run_dir, config.best) is None:
        raise UsageError(f"{run_dir} is a one-sided run (A -> B only): on an image folder eval has nothing to measure "
                         "without --metrics (cycle and identity L1 need a B -> A generator); e.g. --metrics kid "
                         "--features random-cnn, or inception with its weights")
    outputs = (out_dir / "summary.json", out_dir / "grid.png")
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:   # after the usage checks, before any model is loaded or image translated
        raise OutputError(f"{existing[0]}: already exists from an earlier evaluation (pass --overwrite to "
                          "replace it, or --out for another folder)")
    with output_folder(out_dir):     # a folder that cannot be made fails here, before the work
        summary, grid_rows = _evaluate(run_dir, dataroot, train_cfg, config, device, reporter, extractor)
        save_image(_grid(grid_rows), outputs[1], overwrite=overwrite)
        write_bytes_atomic(outputs[0], json.dumps(summary, indent=2).encode(), overwrite=overwrite)
    return summary


def _evaluate(run_dir: Path, dataroot: str, train_cfg: TrainConfig | None, config: EvalConfig, device: Any,
              reporter: Reporter, extractor: "FeatureExtractor | None") -> tuple[dict[str, Any], list]:
    """The evaluation itself: the summary and the grid's rows."""
    import torch

    gens = _generators(run_dir, device, config.best)
    if config.metrics and extractor is None:
        from i2i.metrics.registry import build_extractor

        extractor = build_extractor(config.features, device, config.inception_weights)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "dataroot": dataroot,
                               "checkpoint": str(resolve_generator_file(run_dir, "AtoB", config.best).parent),
                               "directions": list(gens)}
    if config.best:
        from i2i.cyclegan.checkpoint import best_checkpoint, checkpoint_info

        summary["best"] = checkpoint_info(best_checkpoint(run_dir))
    with torch.inference_mode():
        if dataroot == BUILTIN_SHAPES:
            grid_rows = _eval_shapes(gens, train_cfg, config, device, reporter, summary)
        else:
            grid_rows = _eval_folders(gens, train_cfg, config, device, reporter, summary, extractor)
    return summary, grid_rows


def _eval_shapes(gens, train_cfg, config, device, reporter, summary) -> list[list[Image.Image]]:
    from i2i.shapes import counterpart, read_shape, render, shapes_cyclegan_pair

    (G_A, cfg_a), (G_B, cfg_b) = gens["AtoB"], gens.get("BtoA", (None, None))   # one-sided runs: A -> B only

    fwd = functools.partial(_scored_translation, device=device, precision=config.precision)

    size = train_cfg.crop_size if train_cfg else 32
    seed = train_cfg.seed if train_cfg else 0
    n = config.limit or SHAPES_EVAL_LIMIT
    grid_rows: list[list[Image.Image]] = []
    for direction, G, cfg, G_back, cfg_back, src, dst in (
            ("AtoB", G_A, cfg_a, G_B, cfg_b, 0, "square"), ("BtoA", G_B, cfg_b, G_A, cfg_a, 1, "circle")):
        if G is None:
            continue
        counts = {"shape": 0, "colour": 0, "position": 0, "all": 0}
        cycle = 0.0
        with reporter.progress(n, f"eval {direction}") as advance:
            for i in range(n):
                spec = shapes_cyclegan_pair(SHAPES_TEST_OFFSET + i, seed)[src]
                real = render(spec, size)
                fake = fwd(G, cfg, real)
                rec = fwd(G_back, cfg_back, fake) if G_back is not None else None
                cycle += _l1(rec, real) if rec is not None else 0.0
                reading = read_shape(fake)
                want = counterpart(spec, dst)
                ok_shape = reading.shape == want.shape
                ok_colour = reading.colour == want.colour
                ok_pos = reading.centroid is not None and max(
                    abs(reading.centroid[0] - want.cx), abs(reading.centroid[1] - want.cy)) \
                    <= POSITION_TOLERANCE
                counts["shape"] += ok_shape
                counts["colour"] += ok_colour
                counts["position"] += ok_pos
                counts["all"] += ok_shape and ok_colour and ok_pos
                if i < config.grid_rows:
                    grid_rows.append([im for im in (real, fake, rec) if im is not None])
                advance(1)
        summary[direction] = {"images": n, **({"cycle_l1": cycle / n} if G_back is not None else {}),
                              **{f"{k}_accuracy": v / n for k, v in counts.items()}}
    return grid_rows


def _eval_folders(gens, train_cfg, config, device, reporter, summary, extractor) -> list[list[Image.Image]]:
    """Cycle/identity L1 per direction, and FID/KID of translated vs real target images."""
    resolution, size, how = eval_size(config, train_cfg)
    keep_aspect = how.startswith("width")
    summary.update(resolution=resolution, image_size=how)
    cfg_a = gens["AtoB"][1]
    modes = {"A": "RGB" if cfg_a.input_nc == 3 else "L", "B": "RGB" if cfg_a.output_nc == 3 else "L"}
    root = Path(summary["dataroot"])
    reals = {d: _load_folder(root / f"{config.phase}{d}", modes[d], config.limit, size, keep_aspect, reporter)
             for d in (("A", "B") if config.metrics or "BtoA" in gens else ("A",))}
    if config.metrics:
        summary.update(metrics=list(config.metrics), features=extractor.name)
    features: dict[str, Any] = {}
    grid_rows: list[list[Image.Image]] = []
    for direction, (src, dst) in (("AtoB", ("A", "B")), ("BtoA", ("B", "A"))):
        if direction not in gens:
            continue
        G, cfg = gens[direction]
        back = gens.get("BtoA" if direction == "AtoB" else "AtoB")
        stats, fakes = _translate_set(G, cfg, back, reals[src], config, device, reporter, direction, grid_rows)
        if config.metrics and fakes:
            if dst not in features:
                features[dst] = extractor([img for _, img in reals[dst]])
            stats.update(distribution_metrics(config.metrics, features[dst], extractor(fakes), config.kid_subsets))
            stats["real_target_images"] = len(reals[dst])
        summary[direction] = stats
    return grid_rows


def _translate_set(G, cfg, back, images, config, device, reporter, direction, grid_rows):
    """Translate ``images``; returns (cycle/identity L1 stats, translated images)."""
    fwd = functools.partial(_scored_translation, device=device, precision=config.precision)

    cycle = identity = 0.0
    fakes = []
    with reporter.progress(len(images), f"eval {direction}") as advance:
        for i, (_, real) in enumerate(images):
            fake = fwd(G, cfg, real)
            fakes.append(fake)
            row = [real, fake]
            if back is not None:
                G_back, cfg_back = back
                rec = fwd(G_back, cfg_back, fake)
                row.append(rec)
                cycle += _l1(rec, real)
                if cfg_back.output_nc == cfg_back.input_nc == len(real.getbands()):
                    identity += _l1(fwd(G_back, cfg_back, real), real)
            if i < config.grid_rows:
                grid_rows.append(row)
            advance(1)
    n = len(fakes)
    stats: dict[str, Any] = {"images": n}
    if back is not None:
        stats.update(cycle_l1=cycle / max(n, 1), identity_l1=identity / max(n, 1))
    return stats, fakes


def distribution_metrics(metrics: tuple[str, ...], real_target: Any, translated: Any,
                         kid_subsets: int = 100) -> dict[str, Any]:
    """The requested metrics of translated-image features against real target features."""
    from i2i.metrics.frechet import fid
    from i2i.metrics.kernel import kid

    out: dict[str, Any] = {}
    if "fid" in metrics:
        out["fid"] = fid(real_target, translated)
    if "kid" in metrics:
        out.update(kid(real_target, translated, subsets=kid_subsets).to_dict())
    return out
