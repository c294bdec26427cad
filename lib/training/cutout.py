"""A person cut out of one photo and blended into another: the pixel work of copy-paste.

lib.training.copy_paste decides what goes where in a scene; these do it: cut a labelled person
out with its alpha, move a patch's colour toward the scene's, measure grain, cover a frame with a
background, turn a patch, and blend it in while the target takes its label.
"""

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Cutout:
    """A person cut out of a training pair: its pixels, its alpha, and which photo edges it touched."""

    image: np.ndarray  # hxwx3 uint8 RGB, the person's bounding box
    alpha: np.ndarray  # hxw float32 in [0, 1]
    edges: tuple[bool, bool, bool, bool]  # touched the photo's top, bottom, left, right


def cut_person(image: np.ndarray, target: np.ndarray, margin: int = 2) -> Cutout | None:
    """The labelled person of a pair (target == 1) with its bounding box; None when too small to use."""
    person = target == 1
    rows, cols = np.flatnonzero(person.any(1)), np.flatnonzero(person.any(0))
    if len(rows) < 8 or len(cols) < 4:
        return None
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    h, w = person.shape
    edges = (top <= margin, bottom >= h - margin, left <= margin, right >= w - margin)
    return Cutout(image[top:bottom, left:right], person[top:bottom, left:right].astype(np.float32), edges)


def match_colour(patch: np.ndarray, scene: np.ndarray, strength: float) -> np.ndarray:
    """Move the patch's Lab mean and spread toward the scene's by `strength` (0: unchanged)."""
    if strength <= 0 or scene.size == 0:
        return patch
    src = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(scene, cv2.COLOR_RGB2LAB).astype(np.float32)
    src_mean, src_std = src.reshape(-1, 3).mean(0), src.reshape(-1, 3).std(0) + 1e-3
    ref_mean, ref_std = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0) + 1e-3
    mean = src_mean + strength * (ref_mean - src_mean)
    std = src_std * (1 + strength * (np.clip(ref_std / src_std, 0.5, 2.0) - 1))
    out = (src - src_mean) / src_std * std + mean
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def grain(image: np.ndarray) -> float:
    """Noise level of a picture: the robust spread of its finest detail (median absolute Laplacian)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.median(np.abs(cv2.Laplacian(gray, cv2.CV_32F)))) if gray.size else 0.0


def fit_cover(image: np.ndarray, out_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of `image` scaled to cover out_hw (aspect kept), as a background."""
    h, w = image.shape[:2]
    scale = max(out_hw[0] / h, out_hw[1] / w) * rng.uniform(1.0, 1.4)
    new_h, new_w = max(out_hw[0], round(h * scale)), max(out_hw[1], round(w * scale))
    image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = rng.integers(0, new_h - out_hw[0] + 1), rng.integers(0, new_w - out_hw[1] + 1)
    return image[top : top + out_hw[0], left : left + out_hw[1]]


def blend_in(
    canvas: np.ndarray,
    target: np.ndarray,
    patch: np.ndarray,
    alpha: np.ndarray,
    top: int,
    left: int,
    label: np.ndarray | None = None,
) -> None:
    """Blend patch (hxwx3) into canvas at (top, left) with alpha, clipped to the canvas, in place.

    label (hxw, 0/1/IGNORE), where given, replaces the target where alpha >= 0.5; by default the
    patch is a person there (target 1).
    """
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    y0, x0, y1, x1 = max(0, top), max(0, left), min(H, top + h), min(W, left + w)
    if y1 <= y0 or x1 <= x0:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (region * (1 - a) + patch[y0 - top : y1 - top, x0 - left : x1 - left] * a).astype(np.uint8)
    covered = a[..., 0] >= 0.5
    new = 1 if label is None else label[y0 - top : y1 - top, x0 - left : x1 - left][covered]
    target[y0:y1, x0:x1][covered] = new


def turn(patch: np.ndarray, alpha: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Patch and alpha turned by `degrees` about their centre, on a canvas grown to hold all of them."""
    h, w = alpha.shape
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)  # about the middle pixel
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(np.ceil(h * sin + w * cos - 1e-6)), int(np.ceil(h * cos + w * sin - 1e-6))
    matrix[0, 2] += (new_w - w) / 2
    matrix[1, 2] += (new_h - h) / 2
    size = (new_w, new_h)
    # the picture's own edge colour beyond its box, so half-covered edge pixels get no dark rim
    patch = cv2.warpAffine(patch, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return patch, cv2.warpAffine(alpha, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
