"""Condition maps made from an image with no model download: Canny edges, soft edges, scribbles, inversion.

``condition_map(image, kind)`` returns the map as an RGB PIL image; ``preprocess_files`` writes the maps of many
files (the ``i2i preprocess`` command). Kinds: :data:`KINDS`; the model-based kinds of the official FreeControl app
(:data:`MODEL_KINDS`: hed, depth, ...) are recognised and refused with a clear error. OpenCV is imported when a map
is made, not here.
"""

from __future__ import annotations

from typing import Any

from i2i.preprocess.kinds import KINDS, MODEL_KINDS

__all__ = ["KINDS", "MODEL_KINDS", "condition_map", "preprocess_files"]


def __getattr__(name: str) -> Any:
    if name == "condition_map":
        from i2i.preprocess.maps import condition_map

        return condition_map
    if name == "preprocess_files":
        from i2i.preprocess.files import preprocess_files

        return preprocess_files
    raise AttributeError(name)
