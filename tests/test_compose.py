"""Compositing pieces and the temporal smoother, on drawn frames where the answer is known."""

import cv2
import numpy as np
import pytest

from lib.live.compose import (
    Compositor,
    TemporalSmoother,
    blend,
    blurred,
    fit_background,
    guided_upsample,
    matte,
    overlay,
    rgba,
    soften,
)


def ellipse_prob(height=60, width=80, center=(40, 30), axes=(18, 22), softness=2.0) -> np.ndarray:
    """A soft person probability: sigmoid of the signed distance to an ellipse edge."""
    inside = np.zeros((height, width), np.uint8)
    cv2.ellipse(inside, center, axes, 0, 0, 360, 1, -1)
    dist_in = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    dist_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    return (1 / (1 + np.exp(-(dist_in - dist_out) / softness))).astype(np.float32)


def test_soften_range_size_and_feather():
    prob = ellipse_prob()
    alpha = soften(prob, (120, 160))
    assert alpha.shape == (120, 160) and alpha.dtype == np.float32
    assert 0 <= alpha.min() and alpha.max() <= 1
    assert alpha[60, 80] > 0.99 and alpha[2, 2] < 0.01
    hard = (prob > 0.5).astype(np.float32)
    assert np.unique(matte(hard, feather=0.0)).tolist() == [0.0, 1.0]
    assert len(np.unique(matte(hard, feather=0.05))) > 2  # the edge is feathered


def test_blend_extremes_and_overlay():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    bg = np.full_like(frame, 7)
    ones, zeros = np.ones((30, 40), np.float32), np.zeros((30, 40), np.float32)
    assert np.array_equal(blend(frame, bg, ones), frame)
    assert np.array_equal(blend(frame, bg, zeros), bg)
    assert np.array_equal(overlay(frame, zeros), frame)
    tinted = overlay(np.zeros_like(frame), ones, color=(0, 200, 0), opacity=0.5)
    assert np.allclose(tinted[..., 1], 100, atol=1) and tinted[..., 0].max() == 0
    out = rgba(frame, ones * 0.5)
    assert out.shape == (30, 40, 4) and np.all(out[..., 3] == 128)


def test_fit_background_covers_without_stretching():
    bg = np.zeros((100, 100, 3), np.uint8)
    bg[:, 50:] = 255  # right half white
    out = fit_background(bg, (50, 200))  # a wide frame from a square picture: crop top and bottom
    assert out.shape == (50, 200, 3)
    assert out[:, :95].max() == 0 and out[:, 105:].min() == 255  # halves kept: no squeeze
    assert fit_background(np.zeros((7, 3, 3), np.uint8), (48, 64)).shape == (48, 64, 3)


def test_blur_keeps_size_and_smooths():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    out = blurred(frame, strength=1.0)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert out.std() < frame.std() / 3


def test_masked_blur_does_not_spread_the_person_into_the_background():
    frame = np.full((120, 160, 3), 40, np.uint8)
    frame[30:90, 60:100] = 250  # a bright person on a dark background
    person = np.zeros((120, 160), np.float32)
    person[30:90, 60:100] = 1
    plain = blurred(frame, 1.5)
    masked = blurred(frame, 1.5, weight=1 - person)
    ring = (slice(30, 90), slice(50, 58))  # background right beside the person
    assert plain[ring].mean() > 60  # the plain blur drags the person's brightness out: a halo
    assert abs(masked[ring].mean() - 40) < 5


@pytest.mark.parametrize("mode", ["blur", "replace", "mask", "alpha"])
def test_compositor_modes(mode):
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 80, (120, 160, 3), dtype=np.uint8)
    prob = ellipse_prob()  # at the model's size, half the frame's
    inside = cv2.resize((prob > 0.5).astype(np.uint8), (160, 120), interpolation=cv2.INTER_NEAREST)
    core = cv2.erode(inside, np.ones((9, 9), np.uint8)).astype(bool)
    far = cv2.erode(1 - inside, np.ones((9, 9), np.uint8)).astype(bool)
    bg = np.full((120, 160, 3), (255, 0, 0), np.uint8)
    out = Compositor(mode)(frame, prob, bg if mode == "replace" else None)
    if mode == "alpha":
        assert out.shape == (120, 160, 4)
        assert out[..., 3][core].min() > 250 and out[..., 3][far].max() < 5
        return
    assert out.shape == frame.shape
    diff = np.abs(out.astype(int) - frame.astype(int)).mean(axis=2)
    assert diff[core].mean() < 2 if mode != "mask" else diff[core].mean() > 20
    if mode == "blur":
        assert diff[far].mean() > 5
    elif mode == "replace":
        assert np.abs(out[far].astype(int) - (255, 0, 0)).max() <= 3
    else:
        assert diff[far].mean() < 1


def noisy_probs(frames=30, noise=0.15, seed=0):
    """A steady person whose predicted probability jitters from frame to frame (like a real model)."""
    rng = np.random.default_rng(seed)
    base = ellipse_prob(softness=4.0)
    return [np.clip(base + rng.normal(0, noise, base.shape), 0, 1).astype(np.float32) for _ in range(frames)], base


def frame_change(probs):
    labels = [p > 0.5 for p in probs]
    flips = np.mean([np.mean(a != b) for a, b in zip(labels, labels[1:], strict=False)])
    change = np.mean([np.abs(a - b).mean() for a, b in zip(probs, probs[1:], strict=False)])
    return flips, change


def test_smoothing_reduces_frame_to_frame_change():
    probs, base = noisy_probs()
    smoother = TemporalSmoother(0.7)
    smoothed = [smoother(p) for p in probs]
    raw_flips, raw_change = frame_change(probs)
    flips, change = frame_change(smoothed)
    assert flips < 0.7 * raw_flips and change < 0.7 * raw_change
    # and it does not freeze the mask away from the truth
    iou = lambda p: np.sum((p > 0.5) & (base > 0.5)) / np.sum((p > 0.5) | (base > 0.5))  # noqa: E731
    assert np.mean([iou(p) for p in smoothed[5:]]) >= np.mean([iou(p) for p in probs[5:]]) - 0.01


def test_confident_change_passes_at_once_and_off_switch():
    smoother = TemporalSmoother(0.9)
    smoother(np.full((10, 10), 0.02, np.float32))
    jump = np.full((10, 10), 0.02, np.float32)
    jump[:, 5:] = 0.98  # someone steps in, and the model is sure of it
    out = smoother(jump)
    assert out[:, 5:].min() > 0.9 and out[:, :5].max() < 0.1
    off = TemporalSmoother(0.0)
    off(np.zeros((4, 4), np.float32))
    assert np.array_equal(off(np.full((4, 4), 0.6, np.float32)), np.full((4, 4), 0.6, np.float32))
    smoother.reset()
    assert np.array_equal(smoother(jump), jump)  # a new stream (or another size) starts fresh
    with pytest.raises(ValueError):
        TemporalSmoother(1.0)


def test_guided_upsample_puts_the_outline_on_the_frames_edge():
    """A soft, misplaced low-resolution outline snaps to the frame's true edge; flat regions stay put."""
    h, w = 240, 320
    frame = np.full((h, w, 3), 40, np.uint8)
    frame[:, 170:] = 200  # the person's edge at x = 170
    xs = (np.arange(64) + 0.5) * w / 64
    prob = np.tile(1 / (1 + np.exp(-(xs - 160) / 8)), (48, 1)).astype(np.float32)  # soft, centred at x = 160
    plain = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
    refined = guided_upsample(prob, frame)

    row, plain_row = refined[h // 2], plain[h // 2]
    assert abs(int(np.argmax(np.diff(row))) - 169) <= 1  # its steepest step is on the frame's edge
    assert np.diff(row).max() > 0.2 and np.diff(plain_row).max() < 0.05  # a step, not a ramp
    assert refined.shape == (h, w) and refined.dtype == np.float32 and 0 <= refined.min() <= refined.max() <= 1
    assert abs(float(refined[:, :100].mean()) - float(plain[:, :100].mean())) < 0.02  # far from edges: no change


def test_compositor_reuses_its_work_arrays_but_hands_out_new_pictures():
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    prob = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    for refine in (False, True):
        compositor = Compositor("blur", refine=refine)
        first, second = compositor(frame, prob), compositor(frame, prob)
        assert first is not second and np.array_equal(first, second)
        assert len(compositor.buffers.arrays) >= 2  # the full-size arrays are kept, not made anew
    alpha = Compositor("alpha")
    assert alpha(frame, prob) is not alpha(frame, prob)
