"""The learning-rate schedule, the optimizer's groups and the time budget: functions of the loop's
state alone, so a resumed run and a budget that shortens the schedule need nothing but the state."""

import math

import torch
from accelerate.utils import broadcast_object_list

from lib.training.run_folder import LoopState


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.01) -> float:
    """The learning rate's multiplier at optimizer step `step` (0-based): linear warm-up, then cosine
    decay to min_ratio at total_steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on norms and biases (decaying a BatchNorm scale only fights the data)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit_to_budget(total_steps: int, epochs_done: int, steps_per_epoch: int, epoch_s: float, left_s: float) -> int:
    """The total steps that fit in the time left, in whole epochs, never more than planned."""
    return min(total_steps, (epochs_done + max(0, int(left_s / epoch_s))) * steps_per_epoch)


class TimeBudget:
    """train.max_minutes: after each epoch, the schedule's total steps that fit in the time left at
    the last epochs' pace (validation included); the same on every process."""

    def __init__(self, minutes: float, planned_steps: int, steps_per_epoch: int):
        self.seconds, self.planned_steps, self.steps_per_epoch = minutes * 60, planned_steps, steps_per_epoch

    def fit(self, loop: LoopState, epoch_s: float) -> int:
        """loop.seconds: the run's training time so far, the time before a resume included (a budget
        that restarted at each resume would grow the schedule and raise the learning rate again)."""
        loop.epoch_seconds.append(epoch_s)
        pace = sum(loop.epoch_seconds[-3:]) / len(loop.epoch_seconds[-3:])
        left = self.seconds - loop.seconds
        total = [fit_to_budget(self.planned_steps, loop.epochs_done, self.steps_per_epoch, pace, left)]
        broadcast_object_list(total)
        return total[0]
