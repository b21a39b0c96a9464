"""Where the bundled demo model lives, and a clear error when it is missing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from i2i.errors import CheckpointError
from i2i.text import words as prompt_words

if TYPE_CHECKING:
    from i2i.progress import Reporter

DEMO_MODEL_NAME = "demo-shapes"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def demo_model_path() -> Path:
    """The folder of the bundled demo model (a diffusers StableDiffusionPipeline folder) inside the package."""
    path = ASSETS / DEMO_MODEL_NAME
    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"the bundled demo model is missing ({path}); pass --model with a local Stable "
                              "Diffusion folder or hub id, or train it: python -m i2i.demo.train --run DIR "
                              "(docs/demo-model.md)")
    return path


def warn_unknown_words(texts: Iterable[str], model: str | Path, reporter: "Reporter | None") -> None:
    """Warn (through ``reporter``) when ``model`` is a demo model and ``texts`` use words it has no tokens for."""
    from i2i.progress import warn

    if (warning := demo_vocabulary_warning(texts, model)) is not None:
        warn(reporter, warning, stacklevel=3)


def demo_vocabulary_warning(texts: Iterable[str], model: str | Path) -> str | None:
    """A warning naming the words of ``texts`` that a demo model (a folder with ``i2i_demo.json``) has no
    tokens for, or None (all known, or not a demo model). The demo model knows a few dozen words (shapes,
    colours, its prompt templates), so "a lion" gives it nothing to draw a lion from."""
    if not (Path(model) / "i2i_demo.json").is_file():
        return None
    from i2i.demo.data import VOCABULARY
    from i2i.shapes import COLOURS, SHAPES

    words = {w for text in texts for w in prompt_words(text)}
    unknown = sorted(words - set(VOCABULARY))
    if not unknown:
        return None
    listed = ", ".join(repr(w) for w in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
    return (f"{model} is the small demo model: it knows only shapes ({', '.join(SHAPES)}) and colours "
            f"({', '.join(COLOURS)}), not {listed}; pass --model with a Stable Diffusion checkpoint for other "
            "subjects")
