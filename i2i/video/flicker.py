"""Flicker measured as the warping error of Lai et al. 2018 ("Learning Blind Video Temporal Consistency", ECCV,
Sec. 5.1): the previous output frame warped onto the current one by the flow of the INPUT frames, compared with
the current output on the pixels that are not occluded::

    E_warp(t) = sum_x M_t(x) ||O_t(x) - warp(O_{t-1}, b_t)(x)||^2 / sum_x M_t(x)     (values in [0, 1])

averaged over the frames after the first. ``b_t`` is the current -> previous flow and ``M_t`` the non-occlusion
mask; Lai et al. use FlowNet2 and the consistency check of Ruder et al. 2016, this module OpenCV's Farneback flow
with the same check (:mod:`i2i.video.flow`) unless the caller knows the true flow (a synthetic clip).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from i2i.video.flow import estimate_flow, reliable_mask, warp


def warping_error(prev_out: np.ndarray, cur_out: np.ndarray, backward: np.ndarray, mask: np.ndarray) -> float:
    """E_warp between two consecutive output frames (uint8, one size) given the current -> previous ``backward``
    flow and the non-occluded ``mask`` (bool ``[H, W]``); NaN when the mask is empty."""
    moved = warp(prev_out, backward).astype(np.float64) / 255.0
    diff = cur_out.astype(np.float64) / 255.0 - moved
    per_pixel = (diff ** 2).sum(-1) if diff.ndim == 3 else diff ** 2
    count = int(mask.sum())
    return float((per_pixel * mask).sum() / count) if count else float("nan")


def input_flows(inputs: Sequence[np.ndarray], method: str = "farneback") -> list[tuple[np.ndarray, np.ndarray]]:
    """For each frame after the first: ``(backward flow, non-occlusion mask)`` estimated from the input frames."""
    pairs = []
    for prev, cur in zip(inputs, inputs[1:]):
        backward, forward = estimate_flow(cur, prev, method), estimate_flow(prev, cur, method)
        pairs.append((backward, reliable_mask(backward, forward)))
    return pairs


def clip_warping_error(outputs: Sequence[np.ndarray], flows: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean E_warp over a clip: ``flows[t - 1]`` is ``(backward flow, mask)`` between frames ``t - 1`` and ``t``
    (:func:`input_flows`, or a synthetic clip's true motion)."""
    if len(flows) != len(outputs) - 1:
        raise ValueError(f"{len(outputs)} frames need {len(outputs) - 1} flows, not {len(flows)}")
    errors = [warping_error(outputs[t - 1], outputs[t], *flows[t - 1]) for t in range(1, len(outputs))]
    errors = [e for e in errors if not np.isnan(e)]
    return float(np.mean(errors)) if errors else float("nan")
