"""The training loop, top to bottom, with Accelerate doing devices and precision.

train() is the gin root: every setting a recipe binds (train.lr, train.run_root, ...). fit() is
the run: set-up, then an epoch of steps (run_epoch) and its end (end_epoch) until done, then the
test and the exports (finish). Where the run writes lives in lib/training/run_folder.py, the
schedule and the time budget in lib/training/schedule.py.
"""

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import gin
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from tqdm import tqdm

from lib.live.errors import UserError
from lib.live.model_info import ModelInfo
from lib.training.data import build_dataloaders
from lib.training.failures import Diverged, ExportFailed, RunGuard, diverged, exploded
from lib.training.losses import build_loss
from lib.training.model import build_model, load_checkpoint
from lib.training.pairs import Pair
from lib.training.run_folder import LoopState, Run, RunFolder, check_same_network, create_run, reopen_run
from lib.training.schedule import TimeBudget, fit_to_budget, lr_factor, param_groups, set_lr  # noqa: F401
from lib.training.scoring import eval_sets, score_scenes, test_and_export, validate
from lib.training.settings import Hyper, Plumbing
from lib.training.setup import banner, epoch_line, make_accelerator, new_run, start_trackers, use_cpu


class StopRequest:
    """First Ctrl-C / SIGTERM: finish the step, save, exit. A second Ctrl-C stops at once.
    A context manager: the handlers that were there before are put back when it ends."""

    def __init__(self):
        self.requested = False
        self.before: dict = {}

    def __enter__(self) -> "StopRequest":
        self.before = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.before.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


class Interrupted(UserError):
    """Stopped on request after saving a checkpoint; --resume continues."""

    exit_code = 130


@gin.configurable(denylist=["resume"])
def train(
    resume: str | None = None,
    # what the network learns with
    epochs: int = 30,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    lr: float = 3e-4,
    weight_decay: float = 1e-4,
    warmup_steps: int = 100,
    grad_accum: int = 1,
    clip_grad_norm: float | None = 1.0,
    mixed_precision: str | None = None,
    channels_last: bool = False,
    seed: int = 0,
    # where the run writes, and how often
    run_root: str = "experiments",
    log_every: int = 10,
    pics_every: int = 5,
    num_preview: int = 4,
    keep_checkpoints: int = 2,
    log_with: tuple[str, ...] = ("tensorboard", "wandb"),
    export_formats: tuple[str, ...] = ("torchscript", "onnx"),
    eval_roots: tuple[str, ...] = (),
) -> Path:
    """Train, validate every epoch, keep the best; returns the run folder.

    resume: the run folder to continue (train.py --resume; an argument, never a gin binding).
    mixed_precision: None takes the launcher's choice, or 'no', 'fp16', 'bf16'. channels_last:
    NHWC tensors (faster with bf16 on GPUs, and ~1.6x faster training on this CPU). max_steps caps
    the optimizer steps. max_minutes: a time budget the schedule is fitted to after each epoch.
    eval_roots: data scored every epoch and never trained on (with the held-out plates of plate_split).
    """
    hyper = Hyper(epochs, max_steps, max_minutes, lr, weight_decay, warmup_steps, grad_accum, clip_grad_norm,
                  mixed_precision, channels_last, seed)  # fmt: skip
    plumbing = Plumbing(run_root, log_every, pics_every, num_preview, keep_checkpoints, tuple(log_with),
                        tuple(export_formats), tuple(eval_roots))  # fmt: skip
    hyper.check()  # every number a user sets, before anything is built
    plumbing.check()
    return fit(hyper, plumbing, resume)


@dataclass
class Parts:
    """What the loop's functions share: built once by fit(), prepared by Accelerate."""

    hyper: Hyper
    plumbing: Plumbing
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object
    train_dl: object
    val_dl: object
    folder: RunFolder
    loop: LoopState
    run: Run
    steps_per_epoch: int
    memory_format: torch.memory_format
    scenes: tuple[list[Pair], list[Path]]  # evaluation-only pairs and people-free plates
    resumed: bool
    progress: tqdm | None = None
    first_step: int = 0
    clock_zero: float = 0.0

    def say(self, message: str) -> None:
        if self.accelerator.is_main_process:
            self.progress.write(message)


def fit(hyper: Hyper, plumbing: Plumbing, resume: str | None) -> Path:
    """One run, top to bottom: set-up, epochs until the schedule is done, test and exports."""
    cpu = use_cpu()
    state = PartialState(cpu=cpu)
    set_seed(hyper.seed)
    # Two ways in: a new run (splits made from the recipe) or a run reopened (its own split lists).
    # What a mistake in the configuration can break is built before a numbered folder is made.
    # Running out of memory or disk, from here on, ends in one line (lib.training.failures).
    with RunGuard(fresh=not resume, main=state.is_main_process) as guard:
        run = reopen_run(resume) if resume else new_run(plumbing.run_root, state)
        train_dl, val_dl, prep = build_dataloaders(run.splits, seed=hyper.seed)
        guard.limits = {"input_size": prep.input_size, "batch": train_dl.batch_size, "val_batch": val_dl.batch_size}
        model, spec = build_model()
        guard.checkpoint_mb = 3 * sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6  # + AdamW's 2
        loss_fn = build_loss()
        scenes = eval_sets(plumbing.eval_roots)
        if resume:
            check_same_network(run, spec)
        else:
            run = create_run(plumbing.run_root, run, spec, state.is_main_process)
        guard.run_dir = run.path
        return run_to_end(hyper, plumbing, resume, run, (train_dl, val_dl, prep), (model, spec, loss_fn), scenes,
                          cpu, guard)  # fmt: skip


def run_to_end(hyper, plumbing, resume, run: Run, data: tuple, network: tuple, scenes, cpu: bool, guard: RunGuard):
    """fit() once the run folder exists: the loop and the end, on prepared parts."""
    (train_dl, val_dl, prep), (model, spec, loss_fn) = data, network
    accelerator = make_accelerator(run.path, cpu, hyper.mixed_precision, hyper.grad_accum, plumbing.log_with)
    guard.accelerator = accelerator
    # exports find their run from anywhere; `data` lets evaluate.py tell a model its training photos
    info = ModelInfo(spec, prep, {"run_dir": str(run.path.resolve())} | ({"data": run.data} if run.data else {}))
    memory_format = torch.channels_last if hyper.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(param_groups(model, hyper.weight_decay), lr=hyper.lr)
    model, optimizer, train_dl, val_dl = accelerator.prepare(model, optimizer, train_dl, val_dl)
    folder = RunFolder(run.path, accelerator, info, plumbing.keep_checkpoints)
    if not resume:
        folder.save_training_samples(train_dl.dataset)

    # Steps count optimizer steps of this process's loader; the learning rate is a function of
    # the loop's state (lr_factor), so the state is all a resume needs.
    steps_per_epoch = math.ceil(len(train_dl) / hyper.grad_accum)
    planned_steps = min(hyper.max_steps or hyper.epochs * steps_per_epoch, hyper.epochs * steps_per_epoch)
    loop = folder.load_state() if resume else LoopState(total_steps=planned_steps)
    if resume:
        accelerator.print(f"resuming {run.path} at step {loop.step} of {loop.total_steps}")
    batch_size = train_dl.total_batch_size
    start_trackers(accelerator, run.path, info, lr=hyper.lr, epochs=hyper.epochs, batch_size=batch_size,
                   grad_accum=hyper.grad_accum)  # fmt: skip
    accelerator.print(banner(run.path, info, model, run.splits, loop, accelerator))

    # The loop: an epoch of optimizer steps, then its end (validation, weights, pictures, checkpoint)
    parts = Parts(hyper, plumbing, accelerator, model, optimizer, loss_fn, train_dl, val_dl, folder, loop, run,
                  steps_per_epoch, memory_format, scenes, bool(resume))  # fmt: skip
    budget = TimeBudget(hyper.max_minutes, planned_steps, steps_per_epoch) if hyper.max_minutes else None
    main = accelerator.is_main_process
    parts.progress = tqdm(total=loop.total_steps, initial=loop.step, disable=not main, unit="step", dynamic_ncols=True)
    # the clock counts the time before a resume
    parts.first_step, parts.clock_zero = loop.step + 1, time.perf_counter() - loop.seconds
    with StopRequest() as stop, parts.progress:
        # An epoch ends with its end-of-epoch work done; one stopped after its last step is ended here on resume.
        while loop.epochs_done < hyper.epochs and not (loop.step >= loop.total_steps and loop.steps_in_epoch == 0):
            epoch_start = time.perf_counter()
            speed = run_epoch(parts, stop, epoch_start)
            end_epoch(parts, speed, epoch_start, budget)

    # The end: the best weights tested and exported, on the main process
    accelerator.wait_for_everyone()
    if main:
        finish(parts, info)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run.path


def run_epoch(parts: Parts, stop: StopRequest, epoch_start: float) -> float:
    """The optimizer steps of one epoch (those left of it after a resume); returns images per second."""
    p, loop, accelerator = parts, parts.loop, parts.accelerator
    epoch, images, speed = loop.epochs_done, 0, 0.0
    p.train_dl.set_epoch(epoch)  # the shuffle and the augmentation: functions of (seed, epoch)
    skip = loop.steps_in_epoch * p.hyper.grad_accum  # after a resume mid-epoch
    batches = accelerator.skip_first_batches(p.train_dl, skip) if skip else p.train_dl
    for batch in batches if loop.steps_in_epoch < p.steps_per_epoch and loop.step < loop.total_steps else ():
        loss = train_step(parts, batch)
        images += len(batch["image"]) * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue  # still accumulating
        loop.step += 1
        loss_value, stop_now = gather_step(accelerator, loss, stop)
        if exploded(loss_value):
            raise stop_diverged(parts, "training loss", loss_value, epoch + 1)
        loop.epoch_loss = [loop.epoch_loss[0] + loss_value, loop.epoch_loss[1] + 1]
        if loop.step == p.first_step:
            p.folder.write_config(resumed=p.resumed)
        speed = images / (time.perf_counter() - epoch_start)
        p.progress.update(1)
        p.progress.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}", img_s=f"{speed:.1f}")
        if loop.step % p.plumbing.log_every == 0:
            lr = p.hyper.lr * lr_factor(loop.step, loop.total_steps, p.hyper.warmup_steps)
            accelerator.log({"train/loss": loss_value, "train/lr": lr, "train/images_per_s": speed}, step=loop.step)
        if stop_now:
            loop.seconds = time.perf_counter() - p.clock_zero
            p.folder.save_state(loop)
            raise interrupted(loop.step, epoch, p.run.path)
        if loop.step >= loop.total_steps:
            break
    return speed


def train_step(parts: Parts, batch: dict) -> torch.Tensor:
    """Forward, backward and (once the gradients are accumulated) the optimizer's step."""
    p, hyper, loop = parts, parts.hyper, parts.loop
    with p.accelerator.accumulate(p.model):
        loss = p.loss_fn(p.model(batch["image"].contiguous(memory_format=p.memory_format)), batch["mask"])
        p.accelerator.backward(loss)
        if p.accelerator.sync_gradients and hyper.clip_grad_norm:
            p.accelerator.clip_grad_norm_(p.model.parameters(), hyper.clip_grad_norm)
        set_lr(p.optimizer, hyper.lr * lr_factor(loop.step, loop.total_steps, hyper.warmup_steps))
        p.optimizer.step()
        p.optimizer.zero_grad()
    return loss


def end_epoch(parts: Parts, speed: float, epoch_start: float, budget: TimeBudget | None) -> None:
    """Validation (and the evaluation-only scenes), the log line, the budget, weights, pictures, checkpoint."""
    p, loop, accelerator = parts, parts.loop, parts.accelerator
    epoch = loop.epochs_done + 1
    val = validate(p.model, p.val_dl, p.loss_fn, accelerator)
    if exploded(val["loss"]):  # before its weights or checkpoint replace the last good ones
        loop.end_epoch(epoch, val, speed, can_be_best=False)
        raise stop_diverged(parts, "validation loss", val["loss"], epoch)
    if accelerator.is_main_process and any(p.scenes):
        val |= score_scenes(accelerator.unwrap_model(p.model), p.folder.info, accelerator.device, *p.scenes)
    improved = loop.end_epoch(epoch, val, speed)
    accelerator.log({f"val/{k}": v for k, v in val.items() if k != "n"} | {"epoch": epoch}, step=loop.step)
    p.say(epoch_line(epoch, p.hyper.epochs, loop, val, speed, improved))
    loop.seconds, epoch_s = time.perf_counter() - p.clock_zero, time.perf_counter() - epoch_start
    if budget and (total := budget.fit(loop, epoch_s)) != loop.total_steps:
        p.say(f"train.max_minutes={p.hyper.max_minutes}: schedule set to {total} steps")
        loop.total_steps = p.progress.total = total
    p.folder.save_weights(p.model, loop, epoch, val, improved)
    if epoch % p.plumbing.pics_every == 0 or loop.step >= loop.total_steps or epoch == p.hyper.epochs:
        p.folder.save_preview(p.model, p.run.splits["val"][: p.plumbing.num_preview], epoch, loop.step)
    p.folder.save_state(loop)


def finish(parts: Parts, info: ModelInfo) -> None:
    """Main process, after the last epoch: the configuration again (configurables first called after
    step 1 are in it now), the best weights tested, scored on the scenes and exported, metrics.json."""
    p, loop, accelerator = parts, parts.loop, parts.accelerator
    p.folder.write_config(resumed=p.resumed)
    results = {"run": str(p.run.path), "steps": loop.step, "training_minutes": round(loop.seconds / 60, 1)}
    results |= {"best": loop.best, "history": loop.history}
    results |= test_and_export(p.run.path, info, p.run.splits, p.plumbing.export_formats, accelerator.device,
                               accelerator.print)  # fmt: skip
    if any(p.scenes):
        best, _ = load_checkpoint(p.run.path / "weights" / "best.pt")
        results["scenes"] = score_scenes(best, info, accelerator.device, *p.scenes)
    written = p.folder.write_metrics(results)
    if "export_error" in results:
        raise ExportFailed(
            f"{results['export_error']}; the run's weights and {written} are kept: export again with "
            f"python export.py --ckpt {p.run.path / 'weights' / 'best.pt'}"
        )
    accelerator.print(f"done: {written}")


def gather_step(accelerator, loss: torch.Tensor, stop: StopRequest) -> tuple[float, bool]:
    """One collective per step: the mean loss of every process, and whether any was told to stop."""
    shared = accelerator.gather(torch.tensor([[loss.item(), float(stop.requested)]], device=accelerator.device))
    return shared[:, 0].mean().item(), bool(shared[:, 1].max())


def interrupted(step: int, epoch: int, run_dir: Path) -> Interrupted:
    return Interrupted(
        f"stopped at step {step} (epoch {epoch + 1}); checkpoint saved in {run_dir}/checkpoints. "
        f"Continue with: python train.py --resume {run_dir}"
    )


def stop_diverged(parts: Parts, what: str, loss: float, epoch: int) -> Diverged:
    """A loss that is not a number or exploded (lib.training.failures.LOSS_LIMIT): the run stops
    with its checkpoints as they are and writes metrics.json with what it measured so far."""
    p, loop = parts, parts.loop
    error = diverged(what, loss, loop.step, epoch, p.hyper.lr, p.folder.last_checkpoint(), p.run.path)
    if p.accelerator.is_main_process:
        loop.seconds = time.perf_counter() - p.clock_zero
        results = {"run": str(p.run.path), "steps": loop.step, "training_minutes": round(loop.seconds / 60, 1)}
        p.folder.write_metrics(results | {"best": loop.best, "history": loop.history, "stopped": str(error)})
    return error
