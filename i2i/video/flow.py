"""Dense optical flow between video frames (OpenCV, no weights), warping along it, and where it can be trusted.

Convention: ``flow = estimate_flow(a, b)`` gives, for each pixel ``x`` of ``a``, the offset to the same point in
``b``: ``a(x) ~ b(x + flow(x))``, ``flow[..., 0]`` along x (columns), ``flow[..., 1]`` along y (rows). So
``warp(b, estimate_flow(a, b))`` resamples ``b`` onto ``a``'s pixel grid.

- ``dis``: Dense Inverse Search (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search", ECCV),
  OpenCV's ``DISOpticalFlow`` at its medium preset: fast, used by the temporal filter.
- ``farneback``: Farneback 2003 ("Two-Frame Motion Estimation Based on Polynomial Expansion"), OpenCV's
  ``calcOpticalFlowFarneback``: a different method, used to measure flicker so that the filter is not scored
  with the flow it was built on.

:func:`reliable_mask` is the forward-backward consistency and motion-boundary check of Ruder, Dosovitskiy and
Brox 2016 ("Artistic Style Transfer for Videos", GCPR, Sec. 3.2), with their constants.
"""

from __future__ import annotations

import numpy as np

FLOW_METHODS = ("dis", "farneback")
MAX_FLOW_SIDE = 640     # frames larger than this are downscaled for the flow, and the flow scaled back up
MIN_FLOW_SIDE = 16      # frames with a shorter side are enlarged for the flow (OpenCV's DIS refuses under 12 px)


def to_grey(frame: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` from an RGB ``[H, W, 3]`` or grey ``[H, W]`` frame."""
    import cv2

    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _flow_at_scale(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    import cv2

    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(a, b, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=4, winsize=15, iterations=3,
                                            poly_n=5, poly_sigma=1.2, flags=0)
    raise ValueError(f"unknown flow method {method!r} (known: {', '.join(FLOW_METHODS)})")


def estimate_flow(a: np.ndarray, b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow ``[H, W, 2]`` float32 from frame ``a`` to frame ``b`` (RGB or grey uint8, one size); see the module
    docstring for the convention."""
    import cv2

    a, b = to_grey(a), to_grey(b)
    h, w = a.shape
    scale = min(1.0, MAX_FLOW_SIDE / max(h, w))
    if min(h, w) * scale < MIN_FLOW_SIDE:        # tiny frames: computed on an enlarged copy (DIS needs 12 px)
        scale = MIN_FLOW_SIDE / min(h, w)
    if scale == 1.0:
        return _flow_at_scale(a, b, method)
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    flow = _flow_at_scale(cv2.resize(a, small, interpolation=cv2.INTER_AREA),
                          cv2.resize(b, small, interpolation=cv2.INTER_AREA), method)
    flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
    flow[..., 0] *= w / small[0]
    flow[..., 1] *= h / small[1]
    return flow


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` resampled at ``x + flow(x)`` (bilinear; outside the frame: the nearest edge pixel). Keeps
    ``image``'s dtype and channels."""
    import cv2

    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def reliable_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels of the current frame whose backward flow (current -> previous) can be trusted: bool ``[H, W]``.

    ``forward``: the previous -> current flow. A pixel fails when going back and forth does not return to it,
    ``|f + b|^2 > 0.01 (|f|^2 + |b|^2) + 0.5`` with ``f`` the forward flow read at the pixel's place in the
    previous frame (a disocclusion), or when it lies on a motion boundary, ``|grad b_x|^2 + |grad b_y|^2 >
    0.01 |b|^2 + 0.002`` (Ruder et al. 2016).
    """
    f = warp(forward, backward)
    sq = lambda v: (v ** 2).sum(-1)  # noqa: E731
    consistent = sq(f + backward) <= 0.01 * (sq(f) + sq(backward)) + 0.5
    gy_u, gx_u = np.gradient(backward[..., 0])
    gy_v, gx_v = np.gradient(backward[..., 1])
    boundary = gx_u ** 2 + gy_u ** 2 + gx_v ** 2 + gy_v ** 2 > 0.01 * sq(backward) + 0.002
    return consistent & ~boundary
