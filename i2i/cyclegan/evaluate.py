"""``i2i cyclegan eval``: how well a trained run translates.

- On an image folder (``testA``/``testB``): mean cycle L1 (A -> B -> A and B -> A -> B) and identity L1
  (G_B(A) vs A, G_A(B) vs B), on the [-1, 1] scale, every image at its original size.
- On ``builtin:shapes``: the true counterpart of every test image is known, so we also measure accuracy: a
  circle translated A -> B must become a square of the same colour at the same place (and vice versa). The
  test images come from a different random stream than the training images.

Writes ``summary.json`` and ``grid.png`` (rows: real, translated, reconstructed) into the output folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from i2i.cyclegan.checkpoint import load_generator, resolve_generator_file
from i2i.cyclegan.config import TrainConfig
from i2i.cyclegan.data import BUILTIN_SHAPES, list_images
from i2i.cyclegan.translator import translate_pil
from i2i.errors import InputError, OutputError
from i2i.images import image_to_tensor, load_image, save_image
from i2i.progress import Reporter

# A translated shape counts as "in place" when its centroid is within this fraction of the image side.
POSITION_TOLERANCE = 0.08
# Test images of builtin:shapes use indices far from the training ones.
SHAPES_TEST_OFFSET = 10_000_000


@dataclass(frozen=True)
class EvalConfig:
    dataroot: str | None = None        # default: the run's training dataroot
    phase: str = "test"
    limit: int | None = None           # images per direction (default: all; shapes: 200)
    grid_rows: int = 6
    precision: str = "fp32"


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


def evaluate(run_dir: str | Path, out_dir: str | Path, config: EvalConfig = EvalConfig(), device: Any = "cpu",
             reporter: Reporter | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the latest checkpoint of ``run_dir``; returns the summary (also written as JSON)."""
    import torch

    reporter = reporter or Reporter(quiet=True)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    existing = [p for p in (out_dir / "summary.json", out_dir / "grid.png") if p.exists()]
    if existing and not overwrite:   # checked before any model is loaded or image translated
        raise OutputError(f"{existing[0]}: already exists from an earlier evaluation (pass --overwrite to "
                          "replace it, or --out for another folder)")
    cfg_path = run_dir / "config.json"
    train_cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text())) if cfg_path.is_file() else None
    dataroot = config.dataroot or (train_cfg.dataroot if train_cfg else None)
    if dataroot is None:
        raise InputError(f"{run_dir}: no config.json; pass --dataroot")
    G_A, cfg_a = load_generator(resolve_generator_file(run_dir, "AtoB"), device)
    G_B, cfg_b = load_generator(resolve_generator_file(run_dir, "BtoA"), device)
    mode_a = "RGB" if cfg_a.input_nc == 3 else "L"
    mode_b = "RGB" if cfg_a.output_nc == 3 else "L"

    def fwd(G, cfg, img):
        return translate_pil(G, cfg, img, device, precision=config.precision)

    summary: dict[str, Any] = {"run_dir": str(run_dir), "dataroot": dataroot}
    grid_rows: list[list[Image.Image]] = []
    with torch.inference_mode():
        if dataroot == BUILTIN_SHAPES:
            from i2i.shapes import counterpart, read_shape, render, shapes_cyclegan_pair

            size = train_cfg.crop_size if train_cfg else 32
            seed = train_cfg.seed if train_cfg else 0
            n = config.limit or 200
            for direction, G, cfg, G_back, cfg_back, src, dst in (
                    ("AtoB", G_A, cfg_a, G_B, cfg_b, 0, "square"), ("BtoA", G_B, cfg_b, G_A, cfg_a, 1, "circle")):
                counts = {"shape": 0, "colour": 0, "position": 0, "all": 0}
                cycle = 0.0
                with reporter.progress(n, f"eval {direction}") as advance:
                    for i in range(n):
                        spec = shapes_cyclegan_pair(SHAPES_TEST_OFFSET + i, seed)[src]
                        real = render(spec, size)
                        fake = fwd(G, cfg, real)
                        rec = fwd(G_back, cfg_back, fake)
                        cycle += _l1(rec, real)
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
                            grid_rows.append([real, fake, rec])
                        advance(1)
                summary[direction] = {"images": n, "cycle_l1": cycle / n,
                                      **{f"{k}_accuracy": v / n for k, v in counts.items()}}
        else:
            root = Path(dataroot)
            for direction, G, cfg, G_back, cfg_back, folder, mode in (
                    ("AtoB", G_A, cfg_a, G_B, cfg_b, f"{config.phase}A", mode_a),
                    ("BtoA", G_B, cfg_b, G_A, cfg_a, f"{config.phase}B", mode_b)):
                paths = list_images(root / folder, config.limit)
                cycle = identity = 0.0
                done = 0
                with reporter.progress(len(paths), f"eval {direction}") as advance:
                    for i, path in enumerate(paths):
                        try:
                            real = load_image(path, mode=mode)
                        except InputError as exc:
                            reporter.item_error(str(path), str(exc))
                            advance(1)
                            continue
                        fake = fwd(G, cfg, real)
                        rec = fwd(G_back, cfg_back, fake)
                        cycle += _l1(rec, real)
                        if cfg_back.output_nc == cfg_back.input_nc == (3 if mode == "RGB" else 1):
                            identity += _l1(fwd(G_back, cfg_back, real), real)
                        done += 1
                        if i < config.grid_rows:
                            grid_rows.append([real, fake, rec])
                        advance(1)
                summary[direction] = {"images": done, "cycle_l1": cycle / max(done, 1),
                                      "identity_l1": identity / max(done, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_image(_grid(grid_rows), out_dir / "grid.png", overwrite=overwrite)
    from i2i.images import write_bytes_atomic

    write_bytes_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode(), overwrite=overwrite)
    return summary
