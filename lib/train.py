"""The training loop: one function, top to bottom, with Accelerate doing devices and precision.

What the run writes into its folder, and where, lives in lib/run.py.
"""

import math
import os
import signal
import time
from pathlib import Path

import gin
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, broadcast_object_list, parse_flag_from_env, set_seed
from tqdm import tqdm

from lib import experiment, metrics
from lib.data import build_dataloaders, load_splits, make_splits, save_splits
from lib.errors import UserError
from lib.export import metadata
from lib.losses import build_loss
from lib.model import build_model, count_parameters
from lib.run import LoopState, RunFolder, open_run_dir


class StopRequest:
    """First Ctrl-C / SIGTERM: finish the step, save, exit. A second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


class Diverged(UserError):
    """The loss stopped being a number; the run ends, its last good checkpoint kept."""


class Interrupted(UserError):
    """Stopped on request after saving a checkpoint; --resume continues."""

    exit_code = 130


def warmup_cosine(warmup_steps: int, loop: LoopState, min_ratio: float = 0.01):
    """LR multiplier: linear warm-up, then cosine decay to min_ratio at loop.total_steps.

    Reads total_steps on every call, so a time budget can shorten the schedule mid-run.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, loop.total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on norms and biases (decaying a BatchNorm scale only fights the data)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def validate(model, loader, loss_fn, accelerator) -> dict:
    """Scores over the whole split, gathered from every process (duplicates from padding dropped)."""
    model.eval()
    stats, losses = [], []
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["image"]).float()
            # per image, so the mean does not depend on how the split was cut into batches
            loss = torch.stack([loss_fn(logits[i : i + 1], batch["mask"][i : i + 1]) for i in range(len(logits))])
            batch_stats, loss = accelerator.gather_for_metrics((metrics.confusion(logits, batch["mask"]), loss))
            stats.append(batch_stats.cpu())
            losses.append(loss.float().cpu())
    model.train()
    scores = metrics.summarize(torch.cat(stats).numpy())
    scores["loss"] = float(torch.cat(losses).mean())
    return scores


def fit_to_budget(total_steps: int, epochs_done: int, steps_per_epoch: int, epoch_s: float, left_s: float) -> int:
    """The total steps that fit in the time left, in whole epochs, never more than planned."""
    return min(total_steps, (epochs_done + max(0, int(left_s / epoch_s))) * steps_per_epoch)


@gin.configurable
def train(
    run_root: str = "experiments",
    resume: str | None = None,
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
    log_every: int = 10,
    pics_every: int = 5,
    num_preview: int = 4,
    keep_checkpoints: int = 2,
    log_with: tuple[str, ...] = ("tensorboard", "wandb"),
    export_formats: tuple[str, ...] = ("torchscript", "onnx"),
) -> Path:
    """Train, validate every epoch, keep the best; returns the run folder.

    mixed_precision: None takes the launcher's choice (accelerate launch --mixed_precision),
    or 'no', 'fp16', 'bf16'. channels_last: NHWC tensors, faster convolutions with bf16 on
    recent GPUs (and, on a CPU, about 1.6x faster training here). max_steps caps the optimizer
    steps (smoke runs and tests). max_minutes: after each epoch, fit the schedule (cosine included)
    to the whole epochs that fit in the time left at the recent epochs' pace, never beyond the plan.
    """
    # Several processes on a machine without CUDA (torchrun / accelerate launch --multi_gpu on a
    # CPU box) must be told to use the CPU, or Accelerate falls back to one process each.
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (
        int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    )
    run_dir = open_run_dir(run_root, resume, PartialState(cpu=cpu).is_main_process)
    if "wandb" in log_with:
        experiment.default_wandb_mode()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        log_with=list(log_with) or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    set_seed(seed)

    if resume:
        splits, reports = load_splits(run_dir), []
    else:
        splits, reports = make_splits()
        if accelerator.is_main_process:
            save_splits(run_dir, splits)
    for report in reports:
        accelerator.print(f"note: {report}")
    if not splits["val"]:
        raise UserError("make_splits.split leaves no validation pairs; validation picks the best checkpoint")
    train_dl, val_dl, prep = build_dataloaders(splits, seed=seed)
    model, spec = build_model()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    loss_fn = build_loss()
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    model, optimizer, train_dl, val_dl = accelerator.prepare(model, optimizer, train_dl, val_dl)
    folder = RunFolder(
        run_dir, accelerator, metadata(spec, prep, {"run_dir": str(run_dir.resolve())}), keep_checkpoints
    )

    # The schedule counts optimizer steps of this process's loader; stepped by hand, once per
    # step, rather than prepared (a prepared scheduler steps num_processes times per step).
    steps_per_epoch = math.ceil(len(train_dl) / grad_accum)
    loop = LoopState(total_steps=min(max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.optimizer, warmup_cosine(warmup_steps, loop))
    accelerator.register_for_checkpointing(scheduler)
    if resume:
        loop = folder.load_state()
        scheduler.lr_lambdas[0] = warmup_cosine(warmup_steps, loop)
        accelerator.print(f"resuming {run_dir} at step {loop.step} of {loop.total_steps}")
    accelerator.init_trackers(
        "person-seg",
        config={"lr": lr, "epochs": epochs, "batch_size": train_dl.total_batch_size, "grad_accum": grad_accum,
                "arch": spec["arch"], "encoder": spec["encoder_name"], "input_size": str(prep.input_size)},
        init_kwargs={"wandb": {"dir": str(run_dir / "logs"), "name": run_dir.name}},
    )  # fmt: skip
    accelerator.print(
        f"run {run_dir}: {spec['arch']}/{spec['encoder_name']} {count_parameters(model) / 1e6:.2f} M params, "
        f"input {prep.input_size[0]}x{prep.input_size[1]}, {len(splits['train'])}/{len(splits['val'])}/"
        f"{len(splits['test'])} train/val/test, {loop.total_steps} steps on {accelerator.device} "
        f"x{accelerator.num_processes} ({accelerator.mixed_precision})"
    )

    stop = StopRequest()
    progress = tqdm(total=loop.total_steps, initial=loop.step, disable=not accelerator.is_main_process,
                    unit="step", dynamic_ncols=True)  # fmt: skip
    say = progress.write if accelerator.is_main_process else (lambda message: None)
    first_step, started, epoch_seconds = loop.step + 1, time.perf_counter(), []
    planned_steps = min(max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
    start_epoch, done_in_epoch = divmod(loop.step, steps_per_epoch)
    try:
        for epoch in range(start_epoch, epochs):
            if loop.step >= loop.total_steps:
                break
            train_dl.set_epoch(epoch)  # the shuffle and the augmentation: functions of (seed, epoch)
            batches = (
                accelerator.skip_first_batches(train_dl, done_in_epoch * grad_accum) if done_in_epoch else train_dl
            )
            done_in_epoch, tick, images, speed = 0, time.perf_counter(), 0, 0.0
            epoch_started = tick
            for batch in batches:
                with accelerator.accumulate(model):
                    loss = loss_fn(model(batch["image"].contiguous(memory_format=memory_format)), batch["mask"])
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and clip_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                images += len(batch["image"]) * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue  # still accumulating
                scheduler.step()
                loop.step += 1
                # One collective per step: every process's loss, and whether any was told to stop.
                shared = accelerator.gather(
                    torch.tensor([[loss.item(), float(stop.requested)]], device=accelerator.device)
                )
                loss_value, stop_now = shared[:, 0].mean().item(), bool(shared[:, 1].max())
                if not math.isfinite(loss_value):
                    raise diverged(loss_value, loop.step, epoch, run_dir)
                loop.epoch_loss = [loop.epoch_loss[0] + loss_value, loop.epoch_loss[1] + 1]
                if loop.step == first_step:
                    folder.write_config()
                speed = images / (time.perf_counter() - tick)
                progress.update(1)
                progress.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}", img_s=f"{speed:.1f}")
                if loop.step % log_every == 0:
                    accelerator.log({"train/loss": loss_value, "train/lr": scheduler.get_last_lr()[0],
                                     "train/images_per_s": speed}, step=loop.step)  # fmt: skip
                if stop_now:
                    folder.save_state(loop)
                    raise Interrupted(
                        f"stopped at step {loop.step} (epoch {epoch + 1}); checkpoint saved in {run_dir}/checkpoints. "
                        f"Continue with: accelerate launch train.py --resume {run_dir}"
                    )
                if loop.step >= loop.total_steps:
                    break

            val = validate(model, val_dl, loss_fn, accelerator)
            improved = loop.end_epoch(epoch + 1, val, speed)
            accelerator.log({f"val/{k}": v for k, v in val.items() if k != "n"} | {"epoch": epoch + 1}, step=loop.step)
            say(f"epoch {epoch + 1}/{epochs} step {loop.step}: train loss {loop.history[-1]['train_loss']:.4f}, "
                f"val loss {val['loss']:.4f}, val IoU {val['iou']:.4f} (mean {val['mean_iou']:.4f}), {speed:.0f} img/s"
                + ("  *best*" if improved else ""))  # fmt: skip
            epoch_seconds.append(time.perf_counter() - epoch_started)
            if max_minutes:  # fit the rest to the time left at the recent epochs' pace (validation included)
                pace = sum(epoch_seconds[-3:]) / len(epoch_seconds[-3:])
                left = max_minutes * 60 - (time.perf_counter() - started)
                budget = [fit_to_budget(planned_steps, epoch + 1, steps_per_epoch, pace, left)]
                broadcast_object_list(budget)  # every process stops at the same step
                if budget[0] != loop.total_steps:
                    say(f"train.max_minutes={max_minutes}: schedule set to {budget[0]} steps")
                    loop.total_steps = progress.total = budget[0]
            folder.save_weights(model, loop, epoch + 1, val, improved)
            if (epoch + 1) % pics_every == 0 or loop.step >= loop.total_steps or epoch + 1 == epochs:
                folder.save_preview(model, splits["val"][:num_preview], epoch + 1, loop.step)
            folder.save_state(loop)
    finally:
        progress.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        folder.finish(splits, loop, export_formats)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def diverged(loss_value: float, step: int, epoch: int, run_dir: Path) -> Diverged:
    last = experiment.checkpoints(run_dir)
    where = f"The last good checkpoint is {last[-1][1]} (resume with --resume {run_dir}). " if last else ""
    return Diverged(
        f"the training loss became {loss_value} at step {step} (epoch {epoch + 1}); stopped. {where}"
        "Try a lower train.lr, train.mixed_precision='bf16' instead of 'fp16', or check the data."
    )
