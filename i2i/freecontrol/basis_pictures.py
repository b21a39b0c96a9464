"""Pictures of the semantic bases (the FreeControl paper's Fig. 2): the condition image's first three semantic
coordinates shown as RGB, one picture per analysed timestep.

The condition is DDIM-inverted (cached, as for synthesis); at each analysed timestep its self-attention keys in one
layer of the feature block are projected onto the first three basis vectors of that timestep and layer, each
coordinate min-max normalised over the positions to 0..255 (red, green, blue = components 1, 2, 3). Positions
with similar structure get similar colours; the colours themselves mean nothing (a basis vector's sign is
arbitrary). The token grid (16 x 16 for SD 1.5 at 512 px) is enlarged with nearest-neighbour to the image size.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from i2i.errors import UsageError

if TYPE_CHECKING:
    from i2i.freecontrol.bases import SemanticBases
    from i2i.freecontrol.config import FreeControlConfig
    from i2i.freecontrol.pipeline import FreeControlPipeline
    from i2i.progress import Reporter


@dataclass
class BasisPictures:
    """``pictures[i]`` shows timestep ``timesteps[i]`` (first to last); ``tokens``: the ``(height, width)`` token
    grid; ``layer``: the attention layer shown."""

    timesteps: list[int]
    pictures: list[Image.Image]
    tokens: tuple[int, int]
    layer: str

    def grid(self, columns: int | None = None, gap: int = 2) -> Image.Image:
        """All pictures in one image, row by row, first timestep top left, on a white background."""
        return picture_grid(self.pictures, columns, gap)

    def save(self, folder: str | os.PathLike, stem: str, overwrite: bool = False) -> list[Path]:
        """Write ``STEM_tNNNN.png`` per timestep and ``STEM_grid.png`` (last) into ``folder``; returns the paths."""
        from i2i.images import save_image

        folder = Path(folder)
        written = [save_image(p, folder / f"{stem}_t{t:04d}.png", overwrite)
                   for t, p in zip(self.timesteps, self.pictures)]
        written.append(save_image(self.grid(), folder / f"{stem}_grid.png", overwrite))
        return written


def existing_pictures(folder: str | os.PathLike, stem: str) -> list[Path]:
    """Basis pictures of ``stem`` already in ``folder`` (what :meth:`BasisPictures.save` would replace)."""
    import glob

    folder, stem = Path(folder), glob.escape(stem)
    return sorted([*folder.glob(f"{stem}_t[0-9][0-9][0-9][0-9].png"), *folder.glob(f"{stem}_grid.png")])


def basis_pictures(pipe: "FreeControlPipeline", condition: Image.Image | str | os.PathLike, concept: str | None = None,
                   *, bases: "SemanticBases | None" = None, inversion_prompt: str | None = None,
                   config: "FreeControlConfig | None" = None, layer: int = 0,
                   reporter: "Reporter | None" = None) -> BasisPictures:
    """Pictures of ``condition``'s first three semantic coordinates at every timestep of ``bases`` (default: the
    cached bases of ``concept``, computed if needed). ``inversion_prompt`` describes the condition (default: the
    concept itself); ``layer`` indexes the bases' layers (default: the first)."""
    from i2i.images import load_image

    config = (config or pipe.default_config()).validate()
    if bases is None and not concept:
        raise UsageError("give a concept (or bases) for the basis pictures")
    if not isinstance(condition, Image.Image):
        condition = load_image(condition)
    size = pipe.check_size(config.size or pipe.default_size)
    shape = pipe.output_shape(condition.size, size)
    if bases is None:
        bases = pipe.semantic_bases(concept, config.bases, size, reporter)
    layers = pipe._check_bases(bases)
    if not 0 <= layer < len(layers):
        raise UsageError(f"--layer {layer}: the bases have layers 0..{len(layers) - 1}")
    prompt = inversion_prompt if inversion_prompt is not None else (concept or "")
    timesteps = sorted((int(t) for t in bases.timesteps), reverse=True)
    trajectory = pipe.invert(condition, prompt, config, timesteps, reporter)
    cond = pipe.encode_text([prompt], shape)
    shown = dataclasses.replace(config, n_components=min(3, bases.n_components))
    features = pipe.condition_features(trajectory, timesteps, cond, bases, [layers[layer]], shown, None, reporter)
    latent_shape = tuple(trajectory.at(timesteps[0]).shape[-2:])
    pictures, tokens = [], (0, 0)
    for coords, _ in features:
        rgb, tokens = coordinates_to_rgb(coords[0], latent_shape)
        pictures.append(Image.fromarray(rgb, mode="RGB").resize((shape[1], shape[0]), Image.Resampling.NEAREST))
    return BasisPictures(timesteps, pictures, tokens, layers[layer])


def coordinates_to_rgb(coords: torch.Tensor, latent_shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Normalised coordinates ``[HW, K]`` (each in 0..1) -> an RGB array ``[h, w, 3]`` uint8 of the token grid
    (components 1-3; missing ones are 0), and the grid ``(h, w)`` (the latent's shape downsampled by a power of
    two)."""
    hw = coords.shape[0]
    grid = token_grid(hw, latent_shape)
    rgb = torch.zeros(hw, 3)
    k = min(3, coords.shape[1])
    rgb[:, :k] = coords[:, :k].detach().float().cpu()
    arr = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).reshape(grid[0], grid[1], 3).numpy()
    return arr, grid


def token_grid(tokens: int, latent_shape: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` grid of ``tokens`` positions: the latent ``(H, W)`` divided (rounding up) by a power of two."""
    h, w = latent_shape
    for factor in (1, 2, 4, 8, 16, 32, 64):
        grid = (math.ceil(h / factor), math.ceil(w / factor))
        if grid[0] * grid[1] == tokens:
            return grid
    raise ValueError(f"{tokens} positions do not tile a latent of {h}x{w}")


def picture_grid(pictures: list[Image.Image], columns: int | None = None, gap: int = 2) -> Image.Image:
    """``pictures`` (all of one size) in rows of ``columns`` (default: about square), on white."""
    if not pictures:
        raise UsageError("no pictures to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / columns)
    w, h = pictures[0].size
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i, picture in enumerate(pictures):
        sheet.paste(picture, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return sheet
