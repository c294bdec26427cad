"""How a training run ends when it cannot go on: a loss that explodes, memory or disk that runs out.

Each gets one line that says what happened and what to change, and the run folder is left in a
state that matches the advice: a run with a finished checkpoint keeps it (--resume continues), a
run stopped before its first checkpoint has nothing to resume, so its half-made folder is removed
(for memory and disk; a diverged run keeps its folder and the metrics.json of what it measured).
"""

import errno
import math
import re
import shutil
from pathlib import Path

import cv2
import torch

from lib.live.errors import UserError
from lib.live.files import WriteFailed

# The losses (BCE, Dice, Lovász on a person mask) start near 1 for a fresh network and fall from
# there; BCE is the mean |logit| of the wrong pixels. Measured on the lite recipe (60 steps, the
# first validation after 10, at the end of the warm-up): runs that went on to learn peaked there at
# 432 to 1.6e5 (lr 0.01 to 0.3: BatchNorm's running statistics lag a fast warm-up); runs that never
# came back reached 2e8 (lr 3) and 2e10 (lr 10), the smoke network 7e28 at lr 10. Above this, or
# not a number, the run has diverged.
LOSS_LIMIT = 1e6
# What the allocators say when memory runs out: CPU torch, CUDA, OpenCV, the fork of a loader worker,
# and oneDNN, whose convolutions say only "could not create a primitive" when their buffers fail.
OOM_WORDS = ("can't allocate memory", "out of memory", "cannot allocate memory", "insufficient memory",
             "failed to allocate", "could not create a primitive")  # fmt: skip


class Diverged(UserError):
    """The loss stopped being a number, or exploded; the run ends, its checkpoints and what it
    measured (metrics.json) kept."""


class ExportFailed(UserError):
    """The trained weights exported, but an export failed its check; weights and metrics kept."""

    exit_code = 1


class OutOfMemory(UserError):
    """The run needs more memory than the machine (or its limit) gives it."""


def exploded(loss: float) -> bool:
    return not math.isfinite(loss) or loss > LOSS_LIMIT


def diverged(what: str, loss: float, step: int, epoch: int, lr: float, last: Path | None, run_dir: Path) -> Diverged:
    kept = f"its checkpoints are kept (the last: {last.name}), and " if last else ""
    return Diverged(
        f"the {what} became {loss:.4g} at step {step} (epoch {epoch}): the training diverged and was stopped; "
        f"{kept}{run_dir / 'metrics.json'} holds what it measured. Try a lower train.lr (this run's: {lr:g}), "
        "train.mixed_precision='bf16' instead of 'fp16', or check the data"
    )


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        return True
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:  # fork of a loader worker
        return True
    if isinstance(error, RuntimeError | cv2.error):  # a loader worker's error arrives as its text
        text = str(error).lower()
        return any(words in text for words in OOM_WORDS)
    return False


def is_disk_full(error: BaseException, folder: Path, writing: bool = False) -> bool:
    """A write that failed because the disk is full: said so by the error, or (torch's own words,
    '[enforce fail at inline_container.cc:672] . unexpected pos ...') by the disk itself.
    `writing`: the error came from a write (a checkpoint save), whatever its words."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(error, WriteFailed) and ("(ENOSPC)" in str(error) or "(EDQUOT)" in str(error)):
        return True
    text = str(error).lower()
    if "no space left on device" in text or "os error 28" in text:  # safetensors (it removes its half file)
        return True
    writing = writing or isinstance(error, OSError) or any(w in text for w in ("write", "inline_container"))
    return writing and space_left(folder) == 0


def space_left(folder: Path) -> int | None:
    """Bytes free on the disk that holds `folder` (below 1 MiB counts as none); None when unknown."""
    try:
        free = shutil.disk_usage(next(p for p in (folder, *folder.absolute().parents) if p.exists())).free
    except OSError:
        return None
    return 0 if free < 2**20 else free


def finished_checkpoints(run_dir: Path) -> list[Path]:
    """checkpoints/step_N (a half-written one is still step_N.tmp); lib.training.run_folder.checkpoints."""
    folder = run_dir / "checkpoints"
    return [p for p in folder.iterdir() if re.fullmatch(r"step_\d+", p.name)] if folder.is_dir() else []


class RunGuard:
    """Around a run, set-up included: turns running out of memory or disk into one line with advice
    that works, and removes a new run's folder that holds no checkpoint yet (nothing in it can be
    resumed; on a full disk it is the space the user needs).

    Filled in as the run is built: `limits` (input size, batch sizes: what the advice names),
    `checkpoint_mb`, `run_dir` once the folder exists, `accelerator` (ended before the folder goes,
    so no tracker writes into it afterwards)."""

    def __init__(self, fresh: bool, main: bool):
        self.fresh, self.main = fresh, main
        self.run_dir: Path | None = None
        self.limits: dict | None = None
        self.checkpoint_mb = 0.0
        self.accelerator = None

    def __enter__(self) -> "RunGuard":
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if not isinstance(error, Exception) or (isinstance(error, UserError) and not isinstance(error, WriteFailed)):
            return False  # not ours to explain (a user error says what to do already)
        if is_out_of_memory(error):
            raise OutOfMemory(self._oom_line() + self._folder_fate(disk=False)) from None
        if self.run_dir is not None and is_disk_full(error, self.run_dir):
            said = str(error) if isinstance(error, WriteFailed) else f"could not write into {self.run_dir}"
            if "(ENOSPC)" not in said and "(EDQUOT)" not in said:
                said += ": no space left on the disk (ENOSPC)"
            raise WriteFailed(said + self._folder_fate(disk=True)) from None
        return False

    def _oom_line(self) -> str:
        if self.limits is None:
            return "out of memory while setting the run up: give it more memory"
        (height, width), batch, val_batch = self.limits["input_size"], self.limits["batch"], self.limits["val_batch"]
        return (
            f"out of memory while training at input {height}x{width} with batch size {batch} "
            f"(validation {val_batch}): lower build_dataloaders.batch_size (and val_batch_size) or "
            "build_dataloaders.input_size (multiples of 32), or give the run more memory"
        )

    def _folder_fate(self, disk: bool) -> str:
        """What became of the run folder, and how to go on from there."""
        if self.run_dir is None:
            return ""
        room = f" (a checkpoint of this network takes about {self.checkpoint_mb:.0f} MB)" if disk else ""
        finished = sorted(finished_checkpoints(self.run_dir), key=lambda p: int(p.name[5:]))
        if finished:
            fix = "make room on that disk" if disk else "lower one of them"
            return (
                f"; the last good checkpoint {finished[-1].name} is kept: {fix}, then "
                f"python train.py --resume {self.run_dir}{room}"
            )
        if not self.fresh or not self.main:
            return ""
        self._end_trackers()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        fix = "make room on that disk or point train.run_root at another" if disk else "lower one of them"
        return (
            f"; no checkpoint was saved yet, so there is nothing to resume and the unfinished run folder "
            f"{self.run_dir} was removed: {fix}, then start the run again{room}"
        )

    def _end_trackers(self) -> None:
        if self.accelerator is not None:
            try:
                self.accelerator.end_training()
            except Exception:  # noqa: BLE001 - a tracker that cannot close must not hide the real error
                pass
