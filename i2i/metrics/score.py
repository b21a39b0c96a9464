"""Per-image scores of generated images: structure distance to the condition and CLIP score to the prompt.

``self_sim``: :mod:`i2i.metrics.selfsim` (DINO ViT-B/8 key self-similarity MSE; lower = structure kept better).
``clip_score``: :mod:`i2i.metrics.clip_score` (100 * cosine; higher = closer to the prompt).

:func:`score_images` is the Python entry point; :func:`score_records` adds both scores to result records such as
``i2i freecontrol --json`` lines (keys ``image``, ``condition``, ``prompt``). Models are loaded once by
:func:`load_scorers` and can be passed in, so a caller scoring every result of a batch loads them once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from PIL import Image

from i2i.errors import InputError, UsageError
from i2i.metrics.clip_score import DEFAULT_CLIP, ClipScorer
from i2i.metrics.selfsim import DEFAULT_DINO, ViTKeys

ImageLike = Union[str, os.PathLike, Image.Image]
SCORES = ("self-sim", "clip")
CONDITION_KEYS = ("condition", "structure")     # the condition image of FreeControl's and Ctrl-X's --json records


def record_condition(record: dict[str, Any]) -> str | None:
    """The condition image of a result record: its ``condition``, or Ctrl-X's ``structure``."""
    return next((record[key] for key in CONDITION_KEYS if record.get(key)), None)


@dataclass
class Scorers:
    """The loaded models; either may be None (that score is then not computed)."""

    structure: ViTKeys | None = None
    clip: ClipScorer | None = None


def check_records(records: Sequence[dict[str, Any]], scores: Sequence[str]) -> None:
    """Before any weights load: ``scores`` are known, every record has what they need (a prompt for ``clip``, a
    condition for ``self-sim``: :class:`UsageError`) and every image and condition file exists
    (:class:`InputError`)."""
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise UsageError(f"--scores {','.join(unknown)}: choose from {','.join(SCORES)}")
    needs = (("clip", "prompt", lambda r: r.get("prompt")), ("self-sim", "condition", record_condition))
    for score, key, get in needs:
        if score in scores and not all(get(r) for r in records):
            raise UsageError(f"--scores {score} needs a {key} for every image (--{key})")
    for rec in records:
        for path in (rec.get("image"), record_condition(rec)):
            if path and not Path(path).is_file():
                raise InputError(f"{path}: a folder, not an image: give the image files in it (e.g. {path}/*.png)"
                                 if Path(path).is_dir() else f"{path}: no such file")


def load_scorers(scores: Sequence[str] = SCORES, dino: str = DEFAULT_DINO, clip: str = DEFAULT_CLIP,
                 device: Any = "cpu") -> Scorers:
    """Load the models the requested ``scores`` need (local folder or hub id each)."""
    unknown = [s for s in scores if s not in SCORES]
    if unknown:
        raise UsageError(f"--scores {','.join(unknown)}: choose from {','.join(SCORES)}")
    if not scores:
        raise UsageError("no score requested")
    from i2i.metrics.clip_score import load_clip
    from i2i.metrics.selfsim import load_dino

    return Scorers(structure=load_dino(dino, device) if "self-sim" in scores else None,
                   clip=load_clip(clip, device) if "clip" in scores else None)


def _image(x: ImageLike) -> Image.Image:
    from i2i.images import load_image

    return x if isinstance(x, Image.Image) else load_image(x)


def score_images(outputs: Sequence[ImageLike], conditions: Sequence[ImageLike] | None = None,
                 prompts: Sequence[str] | None = None, scorers: Scorers | None = None, *,
                 dino: str = DEFAULT_DINO, clip: str = DEFAULT_CLIP, device: Any = "cpu") -> list[dict[str, float]]:
    """Scores of each output: ``self_sim`` against its condition (when conditions are given and the structure
    model is loaded) and ``clip_score`` against its prompt (when prompts are given and CLIP is loaded).

    ``conditions``/``prompts``: one per output, or a single one for all. Without ``scorers``, the models the
    given inputs need are loaded from ``dino`` / ``clip``.
    """
    n = len(outputs)
    conditions = _broadcast(conditions, n, "conditions")
    prompts = _broadcast(prompts, n, "prompts")
    if scorers is None:
        wanted = [s for s, given in (("self-sim", conditions), ("clip", prompts)) if given is not None]
        scorers = load_scorers(wanted, dino, clip, device)
    results = []
    for i, out in enumerate(outputs):
        img = _image(out)
        row: dict[str, float] = {}
        if conditions is not None and scorers.structure is not None:
            from i2i.metrics.selfsim import self_similarity_distance

            row["self_sim"] = self_similarity_distance(scorers.structure, _image(conditions[i]), img)
        if prompts is not None and scorers.clip is not None:
            row["clip_score"] = scorers.clip(img, prompts[i])
        results.append(row)
    return results


def _broadcast(values: Sequence[Any] | None, n: int, what: str) -> list[Any] | None:
    if values is None or len(values) == 0:
        return None
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise UsageError(f"{len(values)} {what} for {n} images: give one, or one per image")
    return list(values)


def score_records(records: Sequence[dict[str, Any]], scorers: Scorers, base: str | os.PathLike = ".",
                  condition_key: str | None = None) -> list[dict]:
    """Copies of result records (``image``, optional condition image — under ``condition_key``, by default
    ``condition`` or Ctrl-X's ``structure`` — and ``prompt``; relative paths are taken from ``base``) with
    ``self_sim`` / ``clip_score`` added. Records without an ``image`` (e.g. errors) pass through."""
    out = []
    for rec in records:
        if not rec.get("image"):
            out.append(dict(rec))
            continue
        path = lambda p: p if Path(p).is_absolute() else Path(base) / p  # noqa: E731
        found = record_condition(rec) if condition_key is None else rec.get(condition_key)
        cond = [path(found)] if found else None
        prompt = [rec["prompt"]] if rec.get("prompt") else None
        out.append({**rec, **score_images([path(rec["image"])], cond, prompt, scorers)[0]})
    return out
