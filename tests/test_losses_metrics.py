"""Losses and metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from lib.live.errors import UserError
from lib.training import metrics
from lib.training.losses import WeightedSum, build_loss

# One image, four pixels: logits and truth.
LOGITS = torch.tensor([2.0, -1.0, 0.5, -3.0]).reshape(1, 1, 2, 2)
TRUTH = torch.tensor([1.0, 0.0, 0.0, 1.0]).reshape(1, 1, 2, 2)


def _sig(x):
    return 1 / (1 + math.exp(-x))


P = [_sig(x) for x in (2.0, -1.0, 0.5, -3.0)]
BCE = -(math.log(P[0]) + math.log(1 - P[1]) + math.log(1 - P[2]) + math.log(P[3])) / 4
# smp's DiceLoss (binary, smooth=0, eps=1e-7): 1 - 2*sum(p*t) / sum(p + t)
DICE = 1 - 2 * (P[0] + P[3]) / (sum(P) + 2)
# Lovász hinge, one image: errors 1 - x*sign, sorted descending, against the IoU's Lovász gradient
_errors = sorted([(1 - 2.0 * 1, 1), (1 - (-1.0) * -1, 0), (1 - 0.5 * -1, 0), (1 - (-3.0) * 1, 1)], reverse=True)
# sorted: (4.0, t=1), (1.5, t=0), (0.0, t=0), (-1.0, t=1); gts=2
# jaccard after k: 1 - (gts - cumsum t) / (gts + cumsum(1-t)) -> [0.5, 2/3, 0.75, 1.0]; grad = diffs
_grad = [0.5, 2 / 3 - 0.5, 0.75 - 2 / 3, 1.0 - 0.75]
LOVASZ = sum(max(e, 0) * g for (e, _), g in zip(_errors, _grad, strict=True))


@pytest.mark.parametrize(
    "weights, expected",
    [
        ({"bce": 1.0}, BCE),
        ({"dice": 1.0}, DICE),
        ({"lovasz": 1.0}, LOVASZ),
        ({"bce": 0.5, "dice": 2.0}, 0.5 * BCE + 2.0 * DICE),
    ],
)
def test_losses_by_hand(weights, expected):
    assert build_loss(weights)(LOGITS, TRUTH).item() == pytest.approx(expected, rel=1e-5)


def test_default_loss_is_the_reference_softbce():
    loss = build_loss()
    assert list(loss.weights) == ["bce"]
    assert loss(LOGITS, TRUTH).item() == pytest.approx(BCE, rel=1e-6)


def test_unknown_loss_and_bad_weights():
    with pytest.raises(UserError, match="unknown loss 'focal'"):
        WeightedSum({"focal": 1.0})
    with pytest.raises(UserError, match="non-negative"):
        WeightedSum({"bce": -1.0})


def test_confusion_counts_by_hand():
    # pred (p > 0.5): [1, 0, 1, 0]; truth [1, 0, 0, 1] -> tp 1, fp 1, fn 1, tn 1
    assert metrics.confusion(LOGITS, TRUTH).tolist() == [[1, 1, 1, 1]]
    # threshold 0.7: logit 0.5 (p 0.62) drops out -> tp 1, fp 0, fn 1, tn 2
    assert metrics.confusion(LOGITS, TRUTH, threshold=0.7).tolist() == [[1, 0, 1, 2]]
    prob = torch.sigmoid(LOGITS)[0, 0].numpy()
    assert metrics.confusion_np(prob, TRUTH[0, 0].numpy()).tolist() == [1, 1, 1, 1]


def test_summary_sums_over_the_split_and_averages_per_image():
    stats = [[8, 2, 0, 90], [1, 0, 3, 96], [0, 0, 0, 100]]  # the third: no person, none predicted
    s = metrics.summarize(stats)
    assert s["iou"] == pytest.approx(9 / 14)  # (8+1) / (8+1 + 2 + 3)
    assert s["mean_iou"] == pytest.approx((0.8 + 0.25 + 1.0) / 3)
    assert s["median_iou"] == pytest.approx(0.8)
    assert s["dice"] == pytest.approx(18 / 23)
    assert s["pixel_acc"] == pytest.approx((9 + 286) / 300)
    assert s["n"] == 3


def test_boundary_f():
    truth = np.zeros((100, 100), np.uint8)
    truth[20:80, 20:80] = 1
    assert metrics.boundary_f(truth, truth) == 1.0
    shifted = np.roll(truth, 2, axis=1)  # 2 px off: within a 3 px tolerance, outside a 1 px one
    assert metrics.boundary_f(shifted, truth, tolerance=3) == 1.0
    assert metrics.boundary_f(shifted, truth, tolerance=1) < 0.6
    assert metrics.boundary_f(np.zeros_like(truth), truth) == 0.0
    assert metrics.boundary_f(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
