"""Turn a frame and its person probability into the picture users see, cheaply and steadily.

Compositing runs at the frame's full resolution, so every step here avoids full-size heavy
work: the background blur runs on a downscaled copy, the edge feather on the small mask.
"""

import cv2
import numpy as np

MODES = ("blur", "replace", "mask", "alpha")


def soften(prob: np.ndarray, out_hw: tuple[int, int], feather: float = 0.02) -> np.ndarray:
    """Probability -> alpha matte at out_hw, with an edge feathered over `feather` of the short side.

    Sharpened around 0.5 first (the model's soft margin is wider than a real hair line), then
    blurred a little, so the cut-out neither halos nor looks pasted on.
    """
    alpha = np.clip((prob - 0.5) * 3.0 + 0.5, 0.0, 1.0).astype(np.float32)
    if feather > 0:
        k = int(round(feather * min(alpha.shape[:2]))) * 2 + 1
        if k >= 3:
            alpha = cv2.GaussianBlur(alpha, (k, k), 0)
    if alpha.shape[:2] != tuple(out_hw):
        alpha = cv2.resize(alpha, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return alpha


def blurred(frame: np.ndarray, strength: float = 1.0, work_width: int = 160) -> np.ndarray:
    """Strong Gaussian blur of the whole frame, done on a small copy (about 8 ms instead of 60)."""
    h, w = frame.shape[:2]
    scale = min(1.0, work_width / w)
    small = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    sigma = max(0.1, strength * 0.02 * small.shape[1])
    small = cv2.GaussianBlur(small, (0, 0), sigma)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blend(frame: np.ndarray, background: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return (frame * a + background * (1.0 - a)).astype(np.uint8)


def fit_background(background: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Scale a background of any size to cover the frame (centre crop, no stretching)."""
    h, w = out_hw
    bh, bw = background.shape[:2]
    scale = max(h / bh, w / bw)
    nh, nw = max(h, round(bh * scale)), max(w, round(bw * scale))
    resized = cv2.resize(background, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return resized[top : top + h, left : left + w]


def overlay(frame: np.ndarray, alpha: np.ndarray, color=(0, 200, 0), opacity: float = 0.5) -> np.ndarray:
    tint = np.empty_like(frame)
    tint[:] = color
    a = alpha[..., None] * opacity
    return (frame * (1 - a) + tint * a).astype(np.uint8)


def rgba(frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """BGRA frame whose alpha channel is the person matte (for compositors and PNG output)."""
    return np.dstack([frame, (alpha * 255).astype(np.uint8)])


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
