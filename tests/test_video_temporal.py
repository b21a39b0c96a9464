"""Optical flow, warping, the reliability check, the warping error (hand-computed cases) and the temporal filter:
less flicker on a still scene, no ghost behind a moving object."""

import numpy as np
import pytest

from i2i.errors import UsageError
from i2i.video.flicker import clip_warping_error, input_flows, warping_error
from i2i.video.flow import estimate_flow, reliable_mask, warp
from i2i.video.temporal import TemporalConfig, TemporalFilter


def texture(h=64, w=80, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.uint8)
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_recovers_a_shift_and_warp_undoes_it(method):
    a = texture()
    b = np.roll(a, (2, 3), axis=(0, 1))            # b(x) = a(x - (3, 2)): a's content sits 3 right, 2 down in b
    flow = estimate_flow(a, b, method)
    inner = flow[12:-12, 12:-12].reshape(-1, 2)
    assert np.median(inner, axis=0) == pytest.approx([3, 2], abs=0.3)
    back = warp(b, flow)
    assert np.abs(back[12:-12, 12:-12].astype(int) - a[12:-12, 12:-12]).mean() < 6


@pytest.mark.parametrize("size", [(2, 2), (6, 5), (11, 30)])
def test_tiny_frames_get_a_flow_too(size):
    """OpenCV's DIS refuses frames under 12 px; the flow is computed on an enlarged copy and scaled back."""
    a = np.zeros(size, np.uint8)
    a[: size[0] // 2 + 1, : size[1] // 2 + 1] = 200
    b = np.roll(a, 1, axis=1)                      # one pixel to the right
    flow = estimate_flow(a, b)
    assert flow.shape == (*size, 2) and np.isfinite(flow).all()
    if size == (6, 5):                             # a 3 x 3 block one pixel to the right, its own shift found
        assert np.median(flow[..., 0]) == pytest.approx(1, abs=0.2)
    frames = [np.stack([a] * 3, -1), np.stack([b] * 3, -1)]
    f = TemporalFilter()
    assert [f(x, x).shape for x in frames] == [(*size, 3)] * 2


def test_reliable_mask_follows_forward_backward_consistency():
    back = np.zeros((8, 8, 2), np.float32)
    back[..., 0] = 1.0
    assert reliable_mask(back, -back).all()           # there and back again: consistent, no motion boundary
    assert not reliable_mask(back, back).any()        # |f + b|^2 = 4 > 0.01 * 2 + 0.5
    edge = back.copy()
    edge[:, 4:, 0] = 5.0                              # a motion boundary between columns 3 and 4
    mask = reliable_mask(edge, -edge)
    assert not mask[:, 3:5].any() and mask[:, :2].all() and mask[:, 6:].all()


def test_warping_error_by_hand():
    a = np.full((4, 5, 3), 100, np.uint8)
    zero, everywhere = np.zeros((4, 5, 2), np.float32), np.ones((4, 5), bool)
    assert warping_error(a, a, zero, everywhere) == 0.0
    assert warping_error(a, a + 51, zero, everywhere) == pytest.approx(3 * 0.2 ** 2)
    half = everywhere.copy()
    half[:, :2] = False
    b = a.copy()
    b[:, :2] = 0                                      # differs only where the mask is off
    assert warping_error(a, b, zero, half) == 0.0
    assert np.isnan(warping_error(a, b, zero, ~everywhere))


def test_filter_damps_flicker_on_a_still_scene():
    rng = np.random.default_rng(1)
    scene = texture()
    inputs = [scene] * 8
    outputs = [np.clip(scene.astype(int) + rng.integers(-20, 21, scene.shape), 0, 255).astype(np.uint8)
               for _ in inputs]
    filt = TemporalFilter(TemporalConfig(weight=0.5))
    filtered = [filt(i, o) for i, o in zip(inputs, outputs)]
    assert np.array_equal(filtered[0], outputs[0])    # nothing to blend with yet
    assert min(filt.reliable_fraction) > 0.95
    flows = input_flows(inputs)
    before, after = clip_warping_error(outputs, flows), clip_warping_error(filtered, flows)
    assert after < 0.5 * before


def test_filter_follows_motion_without_a_ghost():
    background = np.full((48, 64, 3), 255, np.uint8)
    inputs, outputs = [], []
    for t in range(6):                               # a textured block moving 3 px right per frame
        frame = background.copy()
        frame[12:36, 8 + 3 * t:32 + 3 * t] = texture(24, 24, seed=2)
        inputs.append(frame)
        out = frame.copy()
        out[12:36, 8 + 3 * t:32 + 3 * t] //= 2       # the "translation": the block darker, in its place
        outputs.append(out)
    filt = TemporalFilter()
    filtered = [filt(i, o) for i, o in zip(inputs, outputs)]
    diff = np.abs(filtered[-1].astype(int) - outputs[-1]).mean(-1)
    assert diff.mean() < 2 and (diff > 40).mean() < 0.01   # no trail left where the block was


def test_config_checked():
    with pytest.raises(UsageError):
        TemporalConfig(weight=1.0)
    with pytest.raises(UsageError):
        TemporalConfig(flow="magic")
