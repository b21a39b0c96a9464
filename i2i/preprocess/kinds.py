"""The names of the condition-map kinds, and the check of a kind name (no heavy imports: the CLI's help and flag
parsing use it)."""

from __future__ import annotations

from i2i.errors import CheckpointError, UsageError

# Model-free maps, made here. Their meaning is in docs/preprocess.md.
KINDS: tuple[str, ...] = ("none", "invert", "canny", "edges", "scribble")
# The official FreeControl app's model-based processors and the weights each one downloads there.
MODEL_KINDS: dict[str, str] = {
    "hed": "the HED edge network (lllyasviel/Annotators, used through controlnet_aux)",
    "depth": "a monocular depth network (e.g. Intel/dpt-hybrid-midas)",
    "normal": "a monocular depth network (Intel/dpt-hybrid-midas) for the normals",
    "pose": "the OpenPose body network (lllyasviel/Annotators)",
    "openpose": "the OpenPose body network (lllyasviel/Annotators)",
    "seg": "a semantic segmentation network (openmmlab/upernet-convnext-small)",
    "mlsd": "the M-LSD line network (lllyasviel/Annotators)",
}


def check_kind(kind: str) -> str:
    """``kind`` lower-cased if it is one of :data:`KINDS`. A model-based kind raises :class:`CheckpointError`
    (exit 4: i2i makes no model-based maps), any other name :class:`UsageError`."""
    name = str(kind).strip().lower()
    if name in KINDS:
        return name
    if name in MODEL_KINDS:
        raise CheckpointError(
            f"a '{name}' map needs {MODEL_KINDS[name]}, and i2i makes no model-based maps (no weights are bundled "
            f"or downloaded): make the map with another tool and pass it as the condition image as it is "
            f"(model-free kinds: {', '.join(KINDS)})")
    raise UsageError(f"unknown condition map kind {kind!r} (choose from {', '.join(KINDS)})")
