"""Model-free condition maps, computed with OpenCV (see docs/preprocess.md for why OpenCV).

Conventions follow the official FreeControl app: Canny with thresholds 100 / 200 on the RGB image, computed at the
image's own resolution (``resolution`` resizes its long side first), and edge and scribble maps turned into black
lines on a white background before they are inverted, as the app's code says it does. Every map is an RGB image
of the input's size (or of the ``resolution``-resized size).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from i2i.images import check_side
from i2i.preprocess.kinds import check_kind

# The official app's cv2.Canny thresholds (libs/utils/controlnet_processor.py).
CANNY_THRESHOLDS = (100, 200)
# Soft edges: Sobel magnitude after a Gaussian blur of this sigma, scaled by its maximum, but never by less than
# this magnitude (a flat or nearly flat image stays white instead of its noise being stretched to black).
EDGES_SIGMA = 1.0
EDGES_MIN_SCALE = 128.0
# Scribbles: Canny of a median-filtered image (a window of 1/20 of the long side removes texture and keeps the
# outlines of large regions), thickened the way controlnet_aux turns HED edges into scribbles (a Gaussian blur,
# then every pixel above a level becomes a stroke). Tuned by eye on horse2zebra photos and the example sketches.
SCRIBBLE_WINDOW = 1 / 20
SCRIBBLE_THICKEN = 1 / 170          # blur sigma per pixel of the long side (at least 1.5)
SCRIBBLE_LEVEL = 16


def condition_map(image: Image.Image | str | os.PathLike, kind: str = "canny",
                  resolution: int | None = None) -> Image.Image:
    """The ``kind`` map of ``image`` (a PIL image or a path) as an RGB image.

    ``none``: the image itself (as RGB); ``invert``: 255 - image; ``canny``: black Canny edges (thresholds 100 /
    200) on white; ``edges``: soft edges (graded Sobel magnitude, no thresholds), dark on white; ``scribble``: thick
    simplified strokes, black on white. ``resolution``: resize the long side to this many pixels first (default:
    work at the image's size, as the official app does). Transparent pixels count as white.
    """
    kind = check_kind(kind)
    rgb = _as_rgb(image)
    if resolution is not None:
        rgb = resize_long_side(rgb, resolution)
    if kind == "none":
        return rgb
    arr = np.asarray(rgb, dtype=np.uint8)
    if kind == "invert":
        out = 255 - arr
    elif kind == "canny":
        out = 255 - canny(arr)
    elif kind == "edges":
        out = 255 - soft_edges(arr)
    else:
        out = 255 - scribble(arr)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(out), mode="RGB")


def canny(rgb: np.ndarray, thresholds: tuple[int, int] = CANNY_THRESHOLDS) -> np.ndarray:
    """White-on-black Canny edges ``[H, W]`` uint8 of an RGB array, as the official app computes them:
    ``cv2.Canny`` on all three channels (the strongest channel's gradient wins), aperture 3, L1 gradient."""
    import cv2

    return cv2.Canny(np.ascontiguousarray(rgb), thresholds[0], thresholds[1])


def soft_edges(rgb: np.ndarray, sigma: float = EDGES_SIGMA) -> np.ndarray:
    """White-on-black graded edge strength ``[H, W]`` uint8: Sobel gradient magnitude of the blurred grey image."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = cv2.magnitude(gx, gy)
    scale = max(float(magnitude.max()), EDGES_MIN_SCALE)
    return np.clip(np.rint(magnitude * (255.0 / scale)), 0, 255).astype(np.uint8)


def scribble(rgb: np.ndarray) -> np.ndarray:
    """White-on-black thick strokes ``[H, W]`` uint8: Canny of the median-filtered image, thickened and
    binarised."""
    import cv2

    long_side = max(rgb.shape[:2])
    window = max(3, int(round(long_side * SCRIBBLE_WINDOW)) | 1)         # odd, at least 3
    smooth = cv2.medianBlur(np.ascontiguousarray(rgb), window)
    edges = canny(smooth).astype(np.float32)
    thick = cv2.GaussianBlur(edges, (0, 0), max(1.5, long_side * SCRIBBLE_THICKEN))
    return np.where(thick > SCRIBBLE_LEVEL, 255, 0).astype(np.uint8)


def resize_long_side(img: Image.Image, long_side: int) -> Image.Image:
    """``img`` resized (Lanczos, aspect ratio kept, each side at least 1 px) so that its long side is
    ``long_side``."""
    check_side(long_side, "--resolution")
    w, h = img.size
    scale = long_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def _as_rgb(image: Image.Image | str | os.PathLike) -> Image.Image:
    from i2i.images import convert_image, load_image

    if isinstance(image, Image.Image):
        return convert_image(image, "RGB")
    return load_image(image)
