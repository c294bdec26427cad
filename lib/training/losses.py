"""Losses on person logits: SoftBCE (the reference), Dice, Lovász, and weighted sums of them.

Targets are 1 (person), 0 (background) or 255 (unknown, lib.training.masks.IGNORE): every term leaves the
unknown pixels out, so a bystander nobody labelled is never taught as background.
"""

import gin
import segmentation_models_pytorch as smp
import torch
from torch import nn

from lib.live.errors import UserError

UNKNOWN = 255  # lib.training.masks.IGNORE (not imported: the loss stays free of the data modules)


class MaskedBCE(nn.Module):
    """The reference's SoftBCEWithLogitsLoss, averaged over the known pixels only (smp's own
    ignore_index zeroes the unknown pixels but still divides by all of them)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        known = (target != UNKNOWN).float()
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target * known, reduction="none")
        return (loss * known).sum() / known.sum().clamp(min=1)


def make_term(name: str) -> nn.Module:
    if name == "bce":
        return MaskedBCE()
    if name == "dice":
        return smp.losses.DiceLoss(mode="binary", from_logits=True, ignore_index=UNKNOWN)
    if name == "lovasz":
        # per_image: the Lovász extension of each image's IoU, averaged (as in the paper's setup)
        return smp.losses.LovaszLoss(mode="binary", per_image=True, from_logits=True, ignore_index=UNKNOWN)
    raise UserError(f"build_loss.weights: unknown loss {name!r}; expected some of 'bce', 'dice', 'lovasz'")


class WeightedSum(nn.Module):
    """sum_i w_i * loss_i(logits, target); also reports each term for logging."""

    def __init__(self, weights: dict[str, float]):
        super().__init__()
        if not weights or any(w < 0 for w in weights.values()):
            raise UserError(f"build_loss.weights={weights!r}: expected a non-empty dict of non-negative weights")
        self.weights = dict(weights)
        self.terms = nn.ModuleDict({name: make_term(name) for name in weights})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Losses in fp32 whatever the forward pass ran in: bf16 logits would round the BCE.
        logits = logits.float()
        return sum(w * self.terms[name](logits, target) for name, w in self.weights.items())


@gin.configurable
def build_loss(weights: dict[str, float] | None = None) -> WeightedSum:
    """Default: the reference's SoftBCEWithLogitsLoss alone."""
    return WeightedSum(weights or {"bce": 1.0})
