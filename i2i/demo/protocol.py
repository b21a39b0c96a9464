"""The demo model's evaluation protocol (issue 24): three fixed, seeded splits of cases, and how one output is scored.

A **split** is a pure function of its seed string (:data:`SPLIT_SEEDS`): ``"tuning"`` and ``"tuning-b"`` are the
ones settings may be tuned on (with ``"tuning-c"``, added when the first two had been tuned on so often that
they no longer said how the settings fare on fresh cases); ``"heldout"`` is measured only to quote numbers and never
tuned on. All hold the same kinds of case, drawn the same way from different seeds, and their generation seeds
differ (:func:`generation_seeds`: the tuning split reuses the seeds 0, 1, 2 of the earlier reports; ``"tuning-b"``
and ``"tuning-c"``, added later, give every case its own seed from 2000 and 3000 up, as the held-out split does
from 1000 up, so that tuning also sees as many seeds as cases).

- **structure** cases (FreeControl's condition, Ctrl-X's structure): the black outline sketch of a random shape,
  size and position (:func:`i2i.shapes.random_spec`), and the prompt ``"a {colour} {shape}"``; every (shape, colour)
  pair once, in a shuffled order. The output should fill the sketch and have the prompt's colour.
- **appearance** cases: an outline sketch as above (a little smaller, to leave room) and an appearance image, a
  filled object of colour X on white placed elsewhere in the frame (at most :data:`MAX_OVERLAP` of its area inside
  the sketch's region), of random shape and size; the prompt ``"a {shape}"`` names no colour. Every (sketch shape,
  X) pair once. The output should fill the sketch and have colour X.

Outputs are read with :func:`i2i.shapes.read_object` (robust to non-white backgrounds); IoU is against the
sketch's filled shape (:func:`i2i.shapes.render_mask`). The seed strings and counts are fixed: changing them makes
a new protocol, and numbers from the old one no longer compare.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from i2i.errors import UsageError
from i2i.shapes import COLOURS, SHAPES, SIZE_RANGE, ShapeSpec, caption, iou, random_spec, read_object, render, \
    render_mask

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

SPLITS: tuple[str, ...] = ("tuning", "tuning-b", "tuning-c", "heldout")
SPLIT_SEEDS: dict[str, str] = {"tuning": "i2i-demo-protocol:tuning", "tuning-b": "i2i-demo-protocol:tuning-b",
                               "tuning-c": "i2i-demo-protocol:tuning-c", "heldout": "i2i-demo-protocol:heldout"}
KINDS: tuple[str, ...] = ("structure", "appearance")
# The generation seeds: tuning cycles through the earlier reports' seeds; the others give each case its own.
TUNING_SEEDS: tuple[int, ...] = (0, 1, 2)
FIRST_SEEDS: dict[str, int] = {"heldout": 1000, "tuning-b": 2000, "tuning-c": 3000}
IMAGE_SIZE = 64                                  # the demo model's native size (cases render at any size)
APPEARANCE_SKETCH_SIZE_RANGE: tuple[float, float] = (0.16, 0.26)
APPEARANCE_OBJECT_SIZE_RANGE: tuple[float, float] = (0.10, 0.18)
MAX_OVERLAP = 0.10                               # of the appearance object's area inside the sketch's region
CHANCE_DRAWS = 500                               # objects drawn per case for its chance IoU
_PLACEMENT_TRIES = 200
TUNING_ONLY = ("held-out numbers are measured with the model folder's settings only; tune on --split tuning, "
               "tuning-b or tuning-c")


@dataclass(frozen=True)
class Case:
    """One case: ``sketch`` is the outline's shape and place, its ``colour`` the colour the output should have (the
    prompt's for a structure case, the appearance object's for an appearance case); ``seed`` the generation seed."""

    split: str
    kind: str
    index: int
    sketch: ShapeSpec
    seed: int
    appearance: ShapeSpec | None = None

    @property
    def name(self) -> str:
        return f"{self.split}-{self.kind}-{self.index:02d}"

    @property
    def prompt(self) -> str:
        return caption(self.sketch) if self.kind == "structure" else f"a {self.sketch.shape}"

    @property
    def colour(self) -> str:
        return self.sketch.colour

    def sketch_image(self, size: int = IMAGE_SIZE) -> "Image.Image":
        return render(self.sketch, size, style="outline")

    def appearance_image(self, size: int = IMAGE_SIZE) -> "Image.Image | None":
        return render(self.appearance, size) if self.appearance is not None else None

    def target_mask(self, size: int = IMAGE_SIZE) -> "np.ndarray":
        """The sketch's filled shape: what the output's object is compared with (IoU)."""
        return render_mask(self.sketch, size)

    def chance_iou(self, draws: int = CHANCE_DRAWS) -> float:
        """The sketch IoU an output reaches by chance: the mean IoU of the sketch's filled shape with ``draws``
        objects of its shape sized and placed as the demo model's training scenes place their main object
        (:func:`i2i.shapes.random_spec` with its defaults, as :func:`i2i.demo.data.sample` draws it), with no regard
        to the sketch. A model that draws what its data drew, unguided, scores this on average; a pure function of
        the case."""
        rng = random.Random(f"{SPLIT_SEEDS[self.split]}:chance:{self.kind}:{self.index}")
        target = self.target_mask()
        ious = [iou(render_mask(random_spec(rng, shape=self.sketch.shape), IMAGE_SIZE), target) for _ in range(draws)]
        return round(sum(ious) / draws, 4)

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.name, "split": self.split, "kind": self.kind, "prompt": self.prompt, "seed": self.seed,
                "colour": self.colour, "sketch": asdict(self.sketch),
                "appearance": asdict(self.appearance) if self.appearance is not None else None}


def _check_split(split: str) -> str:
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return split


def check_settings(split: str, overrides: dict[str, Any] | None) -> None:
    """Refuse settings other than the model folder's on the held-out split (a
    :class:`~i2i.errors.UsageError`): settings are tuned on the tuning split only, and a held-out number measured
    with settings chosen for it is no longer held out."""
    if _check_split(split) == "heldout" and overrides:
        raise UsageError(TUNING_ONLY)


def generation_seeds(split: str, count: int) -> list[int]:
    """The generation seeds of a split's ``count`` cases, in order over all its kinds."""
    if _check_split(split) == "tuning":
        return [TUNING_SEEDS[k % len(TUNING_SEEDS)] for k in range(count)]
    return [FIRST_SEEDS[split] + k for k in range(count)]


def overlap(appearance: ShapeSpec, sketch: ShapeSpec, size: int = IMAGE_SIZE) -> float:
    """The fraction of ``appearance``'s filled area that lies inside ``sketch``'s filled region at ``size`` px."""
    a = render_mask(appearance, size)
    return float((a & render_mask(sketch, size)).sum()) / max(1, int(a.sum()))


def _appearance_pair(rng: random.Random, shape: str, colour: str) -> tuple[ShapeSpec, ShapeSpec]:
    """A sketch of ``shape`` and an appearance object of ``colour`` elsewhere in the frame (redrawing the sketch
    when no place is found for the object)."""
    for _ in range(_PLACEMENT_TRIES):
        sketch = random_spec(rng, shape=shape, colour=colour, size_range=APPEARANCE_SKETCH_SIZE_RANGE)
        for _ in range(_PLACEMENT_TRIES):
            look = random_spec(rng, colour=colour, size_range=APPEARANCE_OBJECT_SIZE_RANGE)
            if overlap(look, sketch) <= MAX_OVERLAP:
                return sketch, look
    raise RuntimeError(f"no room for an appearance object beside a {shape} sketch")   # the size ranges leave room


def _specs(split: str, kind: str) -> list[tuple[ShapeSpec, ShapeSpec | None]]:
    seed = SPLIT_SEEDS[split]
    pairs = list(itertools.product(SHAPES, sorted(COLOURS)))
    random.Random(f"{seed}:{kind}:order").shuffle(pairs)
    out: list[tuple[ShapeSpec, ShapeSpec | None]] = []
    for k, (shape, colour) in enumerate(pairs):
        rng = random.Random(f"{seed}:{kind}:{k}")
        if kind == "structure":
            out.append((random_spec(rng, shape=shape, colour=colour, size_range=SIZE_RANGE), None))
        else:
            out.append(_appearance_pair(rng, shape, colour))
    return out


def cases(split: str, kinds: tuple[str, ...] = KINDS) -> list[Case]:
    """Every case of ``split`` (structure cases first, then appearance cases), a pure function of the split's seed
    string: the same list on every call, machine and Python version."""
    specs = [(kind, k, sketch, look) for kind in KINDS for k, (sketch, look) in enumerate(_specs(split, kind))]
    seeds = generation_seeds(split, len(specs))
    return [Case(split, kind, k, sketch, seed, look)
            for (kind, k, sketch, look), seed in zip(specs, seeds) if kind in kinds]


def score(case: Case, image: "Image.Image") -> dict[str, Any]:
    """What one generated ``image`` achieves on ``case``: the object's colour (``read_colour``), whether it is the
    case's colour (``colour_ok``), its shape and its IoU with the sketch's filled shape at the image's size."""
    reading = read_object(image)
    return {"read_colour": reading.colour, "colour_ok": reading.colour == case.colour, "read_shape": reading.shape,
            "iou": round(iou(reading.mask, case.target_mask(image.size[0])), 4)}
