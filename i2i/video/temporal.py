"""Opt-in temporal consistency (``--temporal``): each output frame is blended with the previous output frame,
warped along the optical flow of the INPUT frames, where that flow is reliable. No weights, no training.

For frame ``t`` with input ``I_t`` and generator output ``G_t``::

    b   = flow(I_t -> I_{t-1})              DIS optical flow (Kroeger et al. 2016) on the input frames
    W   = warp(O_{t-1}, b)                  the previous OUTPUT moved onto frame t
    M   = reliable(b, flow(I_{t-1} -> I_t)) forward-backward consistency + motion boundaries (Ruder et al. 2016)
          and |I_t - warp(I_{t-1}, b)| <= max_input_change (the flow explains the input there)
    O_t = weight * W + (1 - weight) * G_t   where M, else G_t

``O`` is what is written, so the blend is a recursive (exponential) filter along motion trajectories: frame-to-frame
flicker of the generator is damped, while anything the flow does not explain (new content, occlusions, cuts) comes
straight from the generator. This is the warp-and-blend scheme that blind video consistency methods build on
(Bonneel et al. 2015, "Blind Video Temporal Consistency"; Lai et al. 2018, "Learning Blind Video Temporal
Consistency", who also define the warping error used to measure it: :mod:`i2i.video.flicker`), without their
gradient-domain solve or trained network. Measured effect: docs/video.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from i2i.errors import UsageError
from i2i.video.flow import FLOW_METHODS, estimate_flow, reliable_mask, to_grey, warp


@dataclass(frozen=True)
class TemporalConfig:
    """``weight``: share of the warped previous output kept where the flow is reliable (0: off, towards 1:
    stronger smoothing, slower to follow real changes); ``max_input_change``: grey levels (0-255) by which the
    input may differ from its own warped previous frame for a pixel to count as reliable; ``flow``: dis or
    farneback."""

    weight: float = 0.5
    max_input_change: float = 20.0
    flow: str = "dis"

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < 1.0:
            raise UsageError(f"temporal weight {self.weight}: must be at least 0 and below 1")
        if self.flow not in FLOW_METHODS:
            raise UsageError(f"temporal flow {self.flow!r}: choose one of {', '.join(FLOW_METHODS)}")


class TemporalFilter:
    """Called once per frame, in order: ``filter(input_frame, output_frame) -> output_frame`` (uint8 arrays;
    the output may have other channels than the input, one size). Keeps the previous input and output."""

    def __init__(self, config: TemporalConfig = TemporalConfig()) -> None:
        self.config = config
        self._prev_in: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        self.reliable_fraction: list[float] = []     # per frame after the first: share of pixels blended

    def __call__(self, frame_in: np.ndarray, frame_out: np.ndarray) -> np.ndarray:
        grey = to_grey(frame_in)
        out = frame_out
        if self._prev_in is not None and self._prev_out is not None and self.config.weight > 0:
            out = self._blend(grey, frame_out)
        self._prev_in, self._prev_out = grey, out
        return out

    def _blend(self, grey: np.ndarray, frame_out: np.ndarray) -> np.ndarray:
        cfg = self.config
        backward = estimate_flow(grey, self._prev_in, cfg.flow)
        forward = estimate_flow(self._prev_in, grey, cfg.flow)
        mask = reliable_mask(backward, forward)
        moved_in = warp(self._prev_in, backward)
        mask &= np.abs(grey.astype(np.float32) - moved_in.astype(np.float32)) <= cfg.max_input_change
        self.reliable_fraction.append(float(mask.mean()))
        moved_out = warp(self._prev_out, backward).astype(np.float32)
        alpha = (mask.astype(np.float32) * cfg.weight)
        alpha = alpha[..., None] if frame_out.ndim == 3 else alpha
        blended = alpha * moved_out + (1.0 - alpha) * frame_out.astype(np.float32)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
