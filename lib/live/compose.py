"""Turn a frame and its person probability into the picture users see, cheaply and steadily.

Compositing runs at the frame's full resolution, so every step here avoids full-size heavy
work: the matte is sharpened and feathered at the model's small size and scaled up once, the
background blur runs on a downscaled copy, and the blends are single OpenCV calls.
"""

import cv2
import numpy as np

MODES = ("blur", "replace", "mask", "alpha")
SHARPEN = 3.0  # the matte's slope around 0.5: the model's soft margin is wider than a real hair line


def matte(prob: np.ndarray, feather: float = 0.02) -> np.ndarray:
    """Probability -> alpha at the same size, its edge feathered over `feather` of the short side.

    Sharpened around 0.5 first (the model's soft margin is wider than a real hair line), then
    blurred a little, so the cut-out neither halos nor looks pasted on.
    """
    alpha = np.clip((prob - 0.5) * SHARPEN + 0.5, 0.0, 1.0).astype(np.float32)
    if feather > 0:
        k = int(round(feather * min(alpha.shape[:2]))) * 2 + 1
        if k >= 3:
            alpha = cv2.GaussianBlur(alpha, (k, k), 0)
    return alpha


def soften(prob: np.ndarray, out_hw: tuple[int, int], feather: float = 0.02) -> np.ndarray:
    """matte() at the probability's own (small) size, then scaled to out_hw: cheap and smooth."""
    alpha = matte(prob, feather)
    if alpha.shape[:2] != tuple(out_hw):
        alpha = cv2.resize(alpha, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return alpha


def blurred(
    frame: np.ndarray,
    strength: float = 1.0,
    work_width: int = 160,
    weight: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Strong Gaussian blur of the whole frame, done on a small copy (about 8 ms instead of 60).

    weight: optional per-pixel weight (any size; resized), e.g. 1 - alpha. The blur then averages
    only background pixels (normalised convolution), so the person's colours do not bleed into
    the blurred background as a halo around them.
    """
    h, w = frame.shape[:2]
    scale = min(1.0, work_width / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    sigma = max(0.1, strength * 0.02 * small.shape[1])
    if weight is None:
        small = cv2.GaussianBlur(small, (0, 0), sigma)
    else:
        wgt = cv2.resize(weight.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        num = cv2.GaussianBlur(small.astype(np.float32) * wgt[..., None], (0, 0), sigma)
        den = cv2.GaussianBlur(wgt, (0, 0), sigma)[..., None]
        plain = cv2.GaussianBlur(small, (0, 0), sigma).astype(np.float32)
        # where hardly any background is near (deep inside the person) fall back to the plain blur
        trust = np.clip(den / 0.05, 0.0, 1.0)
        small = (num / np.maximum(den, 1e-6) * trust + plain * (1.0 - trust)).clip(0, 255).astype(np.uint8)
    return cv2.resize(small, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)


class Buffers:
    """Full-size arrays kept from frame to frame. A fresh multi-megabyte array costs more in page
    faults than the arithmetic done in it (measured: 4 ms against 0.3 ms at 1280x720)."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        array = self.arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = self.arrays[name] = np.empty(shape, dtype)
        return array


def guided_upsample(
    prob: np.ndarray,
    guide_bgr: np.ndarray,
    radius: int = 2,
    eps: float = 1e-2,
    gain: float = 1.0,
    buffers: Buffers | None = None,
) -> np.ndarray:
    """A model-sized probability scaled up to the guide frame's size along the frame's own edges.

    The fast guided filter (He & Sun, 2015) with the frame's grey image as guide: a local linear
    model prob ~ a * grey + b is fitted in (2 radius + 1)^2 windows at the probability's size, and
    a and b, scaled up, are applied to the full-size grey image. Where the frame has an edge, the
    mask's outline snaps to it; in flat regions it stays the plain (bilinear) upscale. eps: how
    strong an edge must be to count (grey in [0, 1]). gain: the result is (q - 0.5) * gain + 0.5,
    folded into a and b so it costs nothing at full size (matte()'s sharpening). Box filters at the
    small size; at full size a grey conversion, two resizes, a multiply-add and a clip, written
    into `buffers` when given (the result is then only valid until the next call).
    """
    buf = buffers or Buffers()
    h, w = prob.shape[:2]
    out_h, out_w = guide_bgr.shape[:2]
    grey = cv2.cvtColor(guide_bgr, cv2.COLOR_BGR2GRAY, dst=buf("grey", (out_h, out_w), np.uint8))
    small = cv2.resize(grey, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    p = prob.astype(np.float32)
    size = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(small), box(p)
    a = (box(small * p) - mean_i * mean_p) / (box(small * small) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    a, b = box(a) * (gain / 255.0), (box(b) - 0.5) * gain + 0.5  # a now applies to grey in 0-255
    full = (out_h, out_w)
    a = cv2.resize(a, (out_w, out_h), dst=buf("a", full), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(b, (out_w, out_h), dst=buf("b", full), interpolation=cv2.INTER_LINEAR)
    q = buf("q", full)
    np.copyto(q, grey, casting="unsafe")
    cv2.multiply(a, q, dst=q)
    cv2.add(q, b, dst=q)
    cv2.threshold(q, 1.0, 1.0, cv2.THRESH_TRUNC, dst=q)
    cv2.threshold(q, 0.0, 0.0, cv2.THRESH_TOZERO, dst=q)
    return q


def refined(prob: np.ndarray, frame_bgr: np.ndarray, sharpen: bool = False, buffers: Buffers | None = None):
    """--refine, in one place for webcam.py and evaluate.py: a model-sized probability scaled up to
    the frame along the frame's own edges (guided_upsample). sharpen: matte()'s slope folded in, so
    the result is the alpha itself (the compositor's use), at no cost at full size."""
    return guided_upsample(prob, frame_bgr, gain=SHARPEN if sharpen else 1.0, buffers=buffers)


def blend(frame: np.ndarray, background: np.ndarray, alpha: np.ndarray, buffers: Buffers | None = None) -> np.ndarray:
    """frame where alpha is 1, background where it is 0 (one OpenCV pass, ~0.6 ms at 640x480)."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    inverse = np.subtract(1.0, alpha, out=(buffers or Buffers())("inverse", alpha.shape), dtype=np.float32)
    return cv2.blendLinear(frame, background, alpha, inverse)


def fit_background(background: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Scale a background of any size to cover the frame (centre crop, no stretching)."""
    h, w = out_hw
    bh, bw = background.shape[:2]
    scale = max(h / bh, w / bw)
    nh, nw = max(h, round(bh * scale)), max(w, round(bw * scale))
    resized = cv2.resize(background, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return np.ascontiguousarray(resized[top : top + h, left : left + w])


def overlay(frame: np.ndarray, alpha: np.ndarray, color=(0, 200, 0), opacity: float = 0.5) -> np.ndarray:
    tint = np.empty_like(frame)
    tint[:] = color
    a = np.ascontiguousarray(alpha * opacity, dtype=np.float32)
    return cv2.blendLinear(frame, tint, 1.0 - a, a)


def rgba(frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """BGRA frame whose alpha channel is the person matte (for compositors and PNG output)."""
    return np.dstack([frame, (alpha * 255 + 0.5).astype(np.uint8)])


class Compositor:
    """One frame and its (small) person probability -> the output picture for a mode.

    blur: background blurred (strength scales the blur radius); replace: a background picture
    (already fitted to the frame) behind the person; mask: the matte tinted over the frame;
    alpha: BGRA with the matte as alpha.
    """

    def __init__(
        self, mode: str = "blur", blur_strength: float = 1.0, feather: float = 0.02, color=(0, 200, 0),
        refine: bool = False,
    ):  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.blur_strength, self.feather, self.color = mode, blur_strength, feather, color
        self.refine = refine  # the outline scaled up along the frame's edges (refined())
        self.buffers = Buffers()  # one stream, one frame at a time: full-size work arrays are reused

    def __call__(self, frame: np.ndarray, prob: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
        """A new output picture; the alpha of `alpha` mode, too, is a new array."""
        full = frame.shape[:2]
        if self.refine:  # a crisp outline: sharpened as matte() does, along the frame's edges
            small = matte(prob, 0.0)
            alpha = refined(prob, frame, sharpen=True, buffers=self.buffers)
        else:
            small = matte(prob, self.feather)
            alpha = small
            if small.shape[:2] != full:
                alpha = cv2.resize(small, full[::-1], dst=self.buffers("alpha", full), interpolation=cv2.INTER_LINEAR)
        if self.mode == "blur":
            back = blurred(
                frame, self.blur_strength, weight=1.0 - small, out=self.buffers("back", frame.shape, np.uint8)
            )
            return blend(frame, back, alpha, self.buffers)
        if self.mode == "replace":
            if background is None:
                raise ValueError("mode 'replace' needs a background")
            return blend(frame, background, alpha, self.buffers)
        if self.mode == "mask":
            return overlay(frame, alpha, self.color)
        return rgba(frame, alpha)


class TemporalSmoother:
    """Steadies the mask over time; stateful, one per stream.

    Each pixel blends with its previous value, weighted by how unsure the model is now: a
    confident pixel (p near 0 or 1) follows the new frame at once, so moving people are not
    dragged; an unsure one (p near 0.5, where flicker lives) leans on the past. momentum=0
    switches it off.
    """

    def __init__(self, momentum: float = 0.7):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.previous: np.ndarray | None = None

    def reset(self) -> None:
        self.previous = None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        if self.momentum == 0 or self.previous is None or self.previous.shape != prob.shape:
            self.previous = prob.astype(np.float32, copy=True)
            return self.previous
        keep = self.momentum * (1.0 - np.abs(2.0 * prob - 1.0))
        self.previous = (keep * self.previous + (1.0 - keep) * prob).astype(np.float32)
        return self.previous
