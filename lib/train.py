"""The training loop: one function, top to bottom, with Accelerate doing devices and precision."""

import json
import math
import os
import signal
import time
from pathlib import Path

import cv2
import gin
import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import (
    ProjectConfiguration,
    broadcast_object_list,
    parse_flag_from_env,
    set_seed,
)
from tqdm import tqdm

from lib import evaluate, experiment, metrics
from lib.data import build_dataloaders, load_splits, make_splits, save_splits
from lib.errors import UserError
from lib.export import export_all, metadata
from lib.inference import Segmenter, torch_backend
from lib.losses import build_loss
from lib.model import build_model, count_parameters, save_checkpoint
from lib.pictures import prediction_row, save_curves, save_grid


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


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.01):
    """LR multiplier: linear warm-up, then cosine decay to min_ratio at total_steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
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


def open_run_dir(run_root: str, resume: str | None, state: PartialState) -> Path:
    """A new experiments/expN (chosen on the main process and shared), or the run to resume."""
    if resume:
        run_dir = Path(resume)
        if not experiment.checkpoints(run_dir):
            raise UserError(
                f"--resume {resume}: no finished checkpoint in {run_dir / 'checkpoints'}; nothing to resume"
            )
        return run_dir
    chosen = [str(experiment.new_run_dir(run_root)) if state.is_main_process else None]
    broadcast_object_list(chosen)
    return Path(chosen[0])


def preview(model, pairs, info: dict, device) -> np.ndarray:
    """Grid rows for fixed validation photos: image | truth | prediction | blurred background."""
    from lib.pairs import read_image, read_mask

    was_training = model.training
    segmenter = Segmenter(torch_backend(model, device), info, "preview")
    rows = []
    for pair in pairs:
        image, truth = read_image(pair.image_path), read_mask(pair.mask_path, pair.layout)
        prob = segmenter(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append(prediction_row(image, truth, prob))
    model.train(was_training)
    return rows


@gin.configurable
def train(
    run_root: str = "experiments",
    resume: str | None = None,
    epochs: int = 30,
    max_steps: int | None = None,
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
    recent GPUs. max_steps caps the optimizer steps (smoke runs and tests).
    """
    # Several processes on a machine without CUDA (torchrun / accelerate launch --multi_gpu on a
    # CPU box) must be told to use the CPU, or Accelerate falls back to one process each.
    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or (
        int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    )
    state = PartialState(cpu=cpu)
    run_dir = open_run_dir(run_root, resume, state)
    if "wandb" in log_with:
        experiment.default_wandb_mode()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        log_with=list(log_with) or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )
    main = accelerator.is_main_process
    say = accelerator.print
    set_seed(seed)

    if resume:
        splits, reports = load_splits(run_dir), []
    else:
        splits, reports = make_splits()
        if main:
            save_splits(run_dir, splits)
    for report in reports:
        say(f"note: {report}")
    if not splits["val"]:
        raise UserError("make_splits.split leaves no validation pairs; validation picks the best checkpoint")
    train_dl, val_dl, prep = build_dataloaders(splits, seed=seed)
    model, spec = build_model()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    loss_fn = build_loss()
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    model, optimizer, train_dl, val_dl = accelerator.prepare(model, optimizer, train_dl, val_dl)
    # The schedule counts optimizer steps of this process's loader; stepped by hand, once per
    # step, rather than prepared (a prepared scheduler steps num_processes times per step).
    steps_per_epoch = math.ceil(len(train_dl) / grad_accum)
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.optimizer, warmup_cosine(warmup_steps, total_steps))
    accelerator.register_for_checkpointing(scheduler)
    info = metadata(spec, prep, {"run_dir": str(run_dir.resolve())})

    step, history, best, epoch_sum = 0, [], None, [0.0, 0]
    if resume:
        step, ckpt = experiment.checkpoints(run_dir)[-1]
        accelerator.load_state(str(ckpt))
        loop = json.loads((ckpt / "loop.json").read_text())
        history, best, epoch_sum = loop["history"], loop["best"], loop["epoch_sum"]
        say(f"resuming {run_dir} at step {step} from {ckpt}")
    accelerator.init_trackers(
        "person-seg",
        config={"lr": lr, "epochs": epochs, "batch_size": train_dl.total_batch_size, "grad_accum": grad_accum,
                "arch": spec["arch"], "encoder": spec["encoder_name"], "input_size": str(prep.input_size)},
        init_kwargs={"wandb": {"dir": str(run_dir / "logs"), "name": run_dir.name}},
    )  # fmt: skip
    say(
        f"run {run_dir}: {spec['arch']}/{spec['encoder_name']} {count_parameters(model) / 1e6:.2f} M params, "
        f"input {prep.input_size[0]}x{prep.input_size[1]}, {len(splits['train'])}/{len(splits['val'])}/"
        f"{len(splits['test'])} train/val/test, {total_steps} steps on {accelerator.device} "
        f"x{accelerator.num_processes} ({accelerator.mixed_precision})"
    )

    def save_checkpoint_dir():
        """Loop state + Accelerate state, written to .tmp first: a kill mid-save keeps the last one."""
        tmp = run_dir / "checkpoints" / f"step_{step}.tmp"
        accelerator.save_state(str(tmp))
        if main:
            experiment.write_json(tmp / "loop.json", {"history": history, "best": best, "epoch_sum": epoch_sum})
            experiment.commit_checkpoint(tmp, run_dir / "checkpoints" / f"step_{step}", keep_checkpoints)
        accelerator.wait_for_everyone()

    stop = StopRequest()
    progress = tqdm(total=total_steps, initial=step, disable=not main, unit="step", dynamic_ncols=True)
    say = progress.write if main else (lambda message: None)
    first_step = step + 1
    start_epoch, done_in_epoch = divmod(step, steps_per_epoch)
    try:
        for epoch in range(start_epoch, epochs):
            if step >= total_steps:
                break
            train_dl.set_epoch(epoch)  # the shuffle and the augmentation: functions of (seed, epoch)
            batches = (
                accelerator.skip_first_batches(train_dl, done_in_epoch * grad_accum) if done_in_epoch else train_dl
            )
            done_in_epoch, tick, images = 0, time.perf_counter(), 0
            for batch in batches:
                with accelerator.accumulate(model):
                    images_in = batch["image"].contiguous(memory_format=memory_format)
                    loss = loss_fn(model(images_in), batch["mask"])
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and clip_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                images += len(batch["image"]) * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue  # still accumulating
                scheduler.step()
                step += 1
                # One collective per step: every process's loss, and whether any was told to stop.
                local = torch.tensor([[loss.item(), float(stop.requested)]], device=accelerator.device)
                shared = accelerator.gather(local)
                loss_value, stop_now = shared[:, 0].mean().item(), bool(shared[:, 1].max())
                if not math.isfinite(loss_value):
                    last = experiment.checkpoints(run_dir)
                    raise Diverged(
                        f"the training loss became {loss_value} at step {step} (epoch {epoch + 1}); stopped. "
                        + (
                            f"The last good checkpoint is {last[-1][1]} (resume with --resume {run_dir}). "
                            if last
                            else ""
                        )
                        + "Try a lower train.lr, train.mixed_precision='bf16' instead of 'fp16', or check the data."
                    )
                epoch_sum = [epoch_sum[0] + loss_value, epoch_sum[1] + 1]
                if step == first_step and main:
                    (run_dir / "operative_config.gin").write_text(gin.operative_config_str())
                speed = images / (time.perf_counter() - tick)
                progress.update(1)
                progress.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}", img_s=f"{speed:.1f}")
                if step % log_every == 0:
                    accelerator.log({"train/loss": loss_value, "train/lr": scheduler.get_last_lr()[0],
                                     "train/images_per_s": speed}, step=step)  # fmt: skip
                if stop_now:
                    save_checkpoint_dir()
                    raise Interrupted(
                        f"stopped at step {step} (epoch {epoch + 1}); checkpoint saved in {run_dir / 'checkpoints'}. "
                        f"Continue with: accelerate launch train.py --resume {run_dir}"
                    )
                if step >= total_steps:
                    break

            val = validate(model, val_dl, loss_fn, accelerator)
            train_loss = epoch_sum[0] / max(1, epoch_sum[1])
            epoch_sum = [0.0, 0]
            history.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val_loss": val["loss"],
                            "val_iou": val["iou"], "val_mean_iou": val["mean_iou"]})  # fmt: skip
            accelerator.log({f"val/{k}": v for k, v in val.items() if k != "n"} | {"epoch": epoch + 1}, step=step)
            improved = best is None or val["iou"] > best["val"]["iou"]
            if improved:
                best = {"epoch": epoch + 1, "step": step, "val": val}
            say(f"epoch {epoch + 1}/{epochs} step {step}: train loss {train_loss:.4f}, val loss {val['loss']:.4f}, "
                f"val IoU {val['iou']:.4f} (mean {val['mean_iou']:.4f}){'  *best*' if improved else ''}")  # fmt: skip
            if main:
                net = accelerator.unwrap_model(model)
                meta = {"run_dir": str(run_dir.resolve()), "epoch": epoch + 1, "step": step, "val": val}
                save_checkpoint(run_dir / "weights" / "last.pt", net, spec, prep, meta)
                if improved:
                    save_checkpoint(run_dir / "weights" / "best.pt", net, spec, prep, meta)
                save_curves(run_dir / "pics" / "curves.png", history)
                last_epoch = epoch + 1 == epochs or step >= total_steps
                if (epoch + 1) % pics_every == 0 or last_epoch:
                    rows = preview(net, splits["val"][:num_preview], info, accelerator.device)
                    save_grid(run_dir / "pics" / f"val_epoch{epoch + 1:03d}.png", rows)
                    experiment.log_image(
                        accelerator, "val/preview", np.vstack([cv2.resize(r, (768, 192)) for r in rows]), step
                    )
            save_checkpoint_dir()
    finally:
        progress.close()

    accelerator.wait_for_everyone()
    if main:
        finish(run_dir, splits, info, best, history, total_steps, accelerator, export_formats)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def finish(
    run_dir: Path, splits, info: dict, best: dict, history: list, steps: int, accelerator, export_formats
) -> None:
    """Main process: score the best weights on the test split, export them, write metrics.json."""
    from lib.model import load_checkpoint

    (run_dir / "operative_config.gin").write_text(gin.operative_config_str())
    model, _ = load_checkpoint(run_dir / "weights" / "best.pt")
    results = {"run": str(run_dir), "steps": steps, "best": best, "history": history}
    if splits["test"]:
        segmenter = Segmenter(torch_backend(model, accelerator.device), info, "best.pt")
        test = evaluate.score(segmenter, splits["test"], num_workers=0, progress=False)
        results["test"] = {k: v for k, v in test.items() if k not in ("worst", "per_image")}
        evaluate.save_worst(run_dir / "pics" / "test_worst.png", segmenter, splits["test"], test)
        accelerator.print(f"test ({test['n']} photos, at mask resolution): IoU {test['iou']:.4f}, "
                          f"mean IoU {test['mean_iou']:.4f}, boundary F {test['boundary_f']:.4f}")  # fmt: skip
    if export_formats:
        results["exports"] = export_all(model, info, run_dir / "weights", "best", export_formats)
        for r in results["exports"].values():
            accelerator.print(f"exported {r['path']} (max |diff| vs eager {r['max_abs_diff']:.1e})")
    experiment.write_json(run_dir / "metrics.json", results)
    accelerator.print(f"done: {run_dir}/metrics.json")
