"""Which inputs are videos, and where a video's output goes. Pure path logic: no PyAV, no torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from i2i.errors import UsageError

# Video containers by extension, with FFmpeg's name for each (written outputs go to a temporary name, so the
# format cannot be guessed from it). Animated GIFs stay images (their first frame), as before.
VIDEO_FORMATS: dict[str, str] = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
    ".mpg": "mpeg", ".mpeg": "mpeg", ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".wmv": "asf",
    ".flv": "flv", ".3gp": "3gp", ".ogv": "ogg"}
VIDEO_EXTENSIONS = frozenset(VIDEO_FORMATS)
DEFAULT_VIDEO_EXT = ".mp4"


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a video container's extension (see :data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def split_videos(items: Sequence) -> tuple[list, list]:
    """Input items (anything with a ``path``) split into ``(images, videos)``, each in its original order."""
    videos = [it for it in items if is_video_file(it.path)]
    images = [it for it in items if not is_video_file(it.path)]
    return images, videos


def video_targets(videos: Sequence, out: str | os.PathLike, suffix: str = "", n_images: int = 0) -> list[Path]:
    """The output path of each video item.

    ``out`` naming a video file (``clip_zebra.mp4``, not an existing folder) is that file, for exactly one
    video and no images (else :class:`UsageError`). Otherwise ``out`` is a folder and each video keeps its
    relative path with ``suffix`` and the extension ``.mp4`` (H.264 in MP4, whatever the input container).
    """
    from i2i.images import is_image_file

    out = Path(out)
    if videos and is_image_file(out) and not out.is_dir():
        raise UsageError(f"--out {out} names an image file, but a video would be written: give a video file "
                         f"name ({DEFAULT_VIDEO_EXT}) or a folder")
    if is_video_file(out) and not out.is_dir():
        if len(videos) != 1 or n_images:
            raise UsageError(f"--out {out} names one video file, but {len(videos) + n_images} inputs would be "
                             "written: give a folder")
        return [out]
    if out.exists() and not out.is_dir():           # as names_one_file says it for images
        raise UsageError(f"--out {out} is an existing file, not a folder")
    return [out / it.rel.parent / f"{it.rel.stem}{suffix}{DEFAULT_VIDEO_EXT}" for it in videos]
