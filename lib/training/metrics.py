"""Person-segmentation scores from confusion counts.

Person IoU is computed from tp/fp/fn summed over the whole split (large people weigh more, as in
the reference's number); mean per-image IoU treats every photo alike. An image with no person
and no prediction counts as a perfect 1.0 for the per-image scores. Unknown pixels (target 255,
lib.training.masks.IGNORE) count nowhere.
"""

import cv2
import numpy as np
import torch


def confusion(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image counts, shape (N, 4): tp, fp, fn, tn. logits (N,1,H,W); target (N,1,H,W) in {0,1}
    or 255 (unknown: counted nowhere).

    threshold is on the probability; sigmoid(x) > t  <=>  x > logit(t).
    """
    pred = logits > torch.logit(torch.tensor(threshold)).item()
    known = target != 255
    truth = (target > 0.5) & known
    background = (target < 0.5) & known
    dims = tuple(range(1, pred.ndim))
    tp = (pred & truth).sum(dims)
    fp = (pred & background).sum(dims)
    fn = (~pred & truth).sum(dims)
    tn = (~pred & background).sum(dims)
    return torch.stack([tp, fp, fn, tn], dim=1).long()


def confusion_np(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The same counts for one image as numpy: prob HxW float, truth HxW {0,1} or 255 (unknown)."""
    pred = prob > threshold
    known = truth != 255
    person = truth == 1
    tp = int(np.count_nonzero(pred & person))
    fp = int(np.count_nonzero(pred & ~person & known))
    fn = int(np.count_nonzero(~pred & person))
    return np.array([tp, fp, fn, int(np.count_nonzero(known)) - tp - fp - fn], dtype=np.int64)


def _ratio(num, den):
    return np.where(den > 0, num / np.maximum(den, 1), 1.0)


def summarize(stats) -> dict[str, float]:
    """stats: (N, 4) tp, fp, fn, tn per image -> the split's scores."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, 4)
    tp, fp, fn, tn = stats.T
    total = stats.sum(0)
    per_image_iou = _ratio(tp, tp + fp + fn)
    return {
        "iou": float(_ratio(total[0], total[:3].sum())),
        "mean_iou": float(per_image_iou.mean()) if len(stats) else float("nan"),
        "median_iou": float(np.median(per_image_iou)) if len(stats) else float("nan"),
        "dice": float(_ratio(2 * total[0], 2 * total[0] + total[1] + total[2])),
        "pixel_acc": float(_ratio(total[0] + total[3], total.sum())),
        "n": int(len(stats)),
    }


def per_image_iou(stats) -> np.ndarray:
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, 4)
    return _ratio(stats[:, 0], stats[:, :3].sum(1))


def _boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel inner boundary of a binary mask."""
    mask = mask.astype(np.uint8)
    eroded = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return (mask - eroded).astype(bool)


def boundary_f(pred: np.ndarray, truth: np.ndarray, tolerance: int | None = None) -> float:
    """Boundary F-score (DAVIS): agreement of the two outlines within `tolerance` pixels.

    Default tolerance 0.8% of the image diagonal (DAVIS's choice): 8 px on a 600x800 photo.
    Precision: share of predicted edge pixels near a true edge; recall: the converse. Edges that
    lie in unknown pixels (truth 255) are left out of both.
    """
    if tolerance is None:
        tolerance = max(1, round(0.008 * float(np.hypot(*truth.shape))))
    known = truth != 255
    pred_edge, true_edge = _boundary(pred > 0) & known, _boundary(truth == 1) & known
    n_pred, n_true = np.count_nonzero(pred_edge), np.count_nonzero(true_edge)
    if n_pred == 0 and n_true == 0:
        return 1.0
    if n_pred == 0 or n_true == 0:
        return 0.0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    near_true = cv2.dilate(true_edge.astype(np.uint8), disk).astype(bool)
    near_pred = cv2.dilate(pred_edge.astype(np.uint8), disk).astype(bool)
    precision = np.count_nonzero(pred_edge & near_true) / n_pred
    recall = np.count_nonzero(true_edge & near_pred) / n_true
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def flicker_rate(prev_pred: np.ndarray, pred: np.ndarray, prev_truth: np.ndarray, truth: np.ndarray) -> float:
    """Share of pixels whose predicted label flips between two frames while the true label does not."""
    flips = (prev_pred != pred) & (prev_truth == truth)
    return float(np.count_nonzero(flips)) / pred.size
