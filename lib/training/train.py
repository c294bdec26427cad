"""The training loop: one function, top to bottom, with Accelerate doing devices and precision.

train() reads like Accelerate's examples; the set-up and the end-of-epoch work are the small
functions beside it. Where the run writes what lives in lib/training/run_folder.py.
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

from lib.live.checks import check_number
from lib.live.errors import UserError
from lib.live.files import check_writable
from lib.live.model_info import ModelInfo
from lib.tools import evaluate
from lib.training import metrics
from lib.training.copy_paste import plate_split
from lib.training.data import build_dataloaders, data_recipe
from lib.training.export import export_all
from lib.training.inference import Segmenter, torch_backend
from lib.training.losses import build_loss
from lib.training.model import build_model, count_parameters, load_checkpoint
from lib.training.pairs import Pair, pairs_under
from lib.training.run_folder import (
    LoopState,
    Run,
    RunFolder,
    check_same_network,
    create_run,
    default_wandb_mode,
    reopen_run,
)


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


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.01) -> float:
    """The learning rate's multiplier at optimizer step `step` (0-based): linear warm-up, then cosine
    decay to min_ratio at total_steps. A function of the loop's state alone, so a resumed run and a
    time budget that shortens the schedule need nothing but the state."""
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


def use_cpu() -> bool:
    """Several processes on a machine without CUDA (torchrun / accelerate launch --multi_gpu on a
    CPU box) must be told to use the CPU, or Accelerate falls back to one process each."""
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return parse_flag_from_env("ACCELERATE_USE_CPU") or (several and not torch.cuda.is_available())


def make_accelerator(run_dir: Path, cpu: bool, mixed_precision, grad_accum: int, log_with) -> Accelerator:
    if "wandb" in log_with:
        default_wandb_mode()
    return Accelerator(
        cpu=cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        log_with=list(log_with) or None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
    )


def new_run(run_root: str, state: PartialState) -> Run:
    """A run to start: its splits made from the recipe (make_splits.*); the folder comes later,
    once everything a mistake can break is built, so a failed launch leaves none."""
    check_writable(run_root, "train.run_root")
    recipe = data_recipe()
    splits, reports = recipe.make()
    for report in reports:
        state.print(f"note: {report}")
    if not splits["val"]:
        raise UserError("make_splits.split leaves no validation pairs; validation picks the best checkpoint")
    return Run(None, splits, recipe.to_dict())


def check_settings(epochs, max_steps, max_minutes, lr, weight_decay, warmup_steps, grad_accum, clip_grad_norm,
                   log_every, pics_every, num_preview, keep_checkpoints) -> None:  # fmt: skip
    """Every number a user sets, checked before anything is built: one line naming the binding."""
    for name, value in (("epochs", epochs), ("grad_accum", grad_accum), ("log_every", log_every),
                        ("pics_every", pics_every), ("keep_checkpoints", keep_checkpoints)):  # fmt: skip
        check_number(f"train.{name}", value, integer=True, low=1)
    check_number("train.max_steps", max_steps, integer=True, low=1, optional=True)
    check_number("train.max_minutes", max_minutes, above=0, optional=True)
    check_number("train.lr", lr, above=0, high=10)
    check_number("train.weight_decay", weight_decay, low=0, high=1)
    check_number("train.warmup_steps", warmup_steps, integer=True, low=0)
    check_number("train.clip_grad_norm", clip_grad_norm, above=0, optional=True)
    check_number("train.num_preview", num_preview, integer=True, low=0)


def start_trackers(accelerator, run_dir: Path, info: ModelInfo, **hyper) -> None:
    config = {
        **hyper,
        "arch": info.spec.arch,
        "encoder": info.spec.encoder_name,
        "input_size": str(info.prep.input_size),
    }
    wandb = {"wandb": {"dir": str(run_dir / "logs"), "name": run_dir.name}}
    accelerator.init_trackers("person-seg", config=config, init_kwargs=wandb)


def banner(run_dir: Path, info: ModelInfo, model, splits: dict, loop: LoopState, accelerator) -> str:
    (height, width), counts = info.prep.input_size, "/".join(str(len(splits[k])) for k in ("train", "val", "test"))
    return (
        f"run {run_dir}: {info.spec.arch}/{info.spec.encoder_name} {count_parameters(model) / 1e6:.2f} M params, "
        f"input {height}x{width}, {counts} train/val/test, {loop.total_steps} steps on {accelerator.device} "
        f"x{accelerator.num_processes} ({accelerator.mixed_precision})"
    )


def gather_step(accelerator, loss: torch.Tensor, stop: StopRequest) -> tuple[float, bool]:
    """One collective per step: the mean loss of every process, and whether any was told to stop."""
    shared = accelerator.gather(torch.tensor([[loss.item(), float(stop.requested)]], device=accelerator.device))
    return shared[:, 0].mean().item(), bool(shared[:, 1].max())


def epoch_line(epoch: int, epochs: int, loop: LoopState, val: dict, speed: float, improved: bool) -> str:
    return (
        f"epoch {epoch}/{epochs} step {loop.step}: train loss {loop.history[-1]['train_loss']:.4f}, "
        f"val loss {val['loss']:.4f}, val IoU {val['iou']:.4f} (mean {val['mean_iou']:.4f}), {speed:.0f} img/s"
        + (f", scenes IoU {val['scene_iou']:.4f}" if "scene_iou" in val else "")
        + (f", false person {100 * val['false_person']:.2f} %" if "false_person" in val else "")
        + ("  *best*" if improved else "")
    )


def eval_sets(eval_roots) -> tuple[list[Pair], list[Path]]:
    """Evaluation-only data (never trained on): the pairs under train.eval_roots and the held-out
    people-free plates (lib.training.copy_paste.plate_split)."""
    pairs = pairs_under(list(eval_roots), flag="train.eval_roots") if eval_roots else []
    return pairs, plate_split()[1]


def score_scenes(model, info: ModelInfo, device, pairs: list[Pair], empty: list[Path]) -> dict:
    """Person IoU on the evaluation-only roots (per root) and the false-person share on empty scenes,
    exactly as evaluate.py scores them (full frames, at mask resolution)."""
    was_training = model.training
    segmenter = Segmenter(torch_backend(model, device), info, "scenes")
    scores = {}
    if pairs:
        result = evaluate.score(segmenter, pairs, num_workers=0, progress=False)
        scores["scene_iou"], scores["scene_mean_iou"] = result["iou"], result["mean_iou"]
        scores |= {f"iou_{Path(root).name}": m["iou"] for root, m in result["by_root"].items()}
    if empty:
        scores["false_person"] = evaluate.false_person(segmenter, empty)["share"]
    model.train(was_training)
    return scores


def test_and_export(run_dir: Path, info: ModelInfo, splits: dict, export_formats, device, say) -> dict:
    """Main process, after training: the best weights scored on the test split and exported."""
    model, _ = load_checkpoint(run_dir / "weights" / "best.pt")
    results = {}
    if splits["test"]:
        segmenter = Segmenter(torch_backend(model, device), info, "best.pt")
        try:
            test = evaluate.score(segmenter, splits["test"], num_workers=0, progress=False)
        except UserError as error:  # a test photo broken since the split: the run's work is kept all the same
            results["test_error"] = str(error)
            say(f"test split not scored: {error}; once mended: python evaluate.py --ckpt {run_dir}/weights/best.pt")
        else:
            results["test"] = {k: v for k, v in test.items() if k not in ("worst", "per_image")}
            evaluate.save_worst(run_dir / "pics" / "test_worst.png", segmenter, splits["test"], test)
            say(
                f"test ({test['n']} photos, at mask resolution): IoU {test['iou']:.4f}, "
                f"mean IoU {test['mean_iou']:.4f}, boundary F {test['boundary_f']:.4f}"
            )
    if export_formats:
        results["exports"] = export_all(model, info, run_dir / "weights", "best", export_formats)
        for r in results["exports"].values():
            say(f"exported {r['path']} (max |diff| vs eager {r['max_abs_diff']:.1e})")
    return results


@gin.configurable(denylist=["resume"])
def train(
    resume: str | None = None,
    run_root: str = "experiments",
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
    eval_roots: tuple[str, ...] = (),
) -> Path:
    """Train, validate every epoch, keep the best; returns the run folder.

    resume: the run folder to continue (train.py --resume; an argument, never a gin binding).
    mixed_precision: None takes the launcher's choice, or 'no', 'fp16', 'bf16'. channels_last:
    NHWC tensors (faster with bf16 on GPUs, and ~1.6x faster training on this CPU). max_steps caps
    the optimizer steps. max_minutes: a time budget the schedule is fitted to after each epoch.
    """
    check_settings(epochs, max_steps, max_minutes, lr, weight_decay, warmup_steps, grad_accum, clip_grad_norm,
                   log_every, pics_every, num_preview, keep_checkpoints)  # fmt: skip
    cpu = use_cpu()
    state = PartialState(cpu=cpu)
    set_seed(seed)
    # Two ways in: a new run (splits made from the recipe) or a run reopened (its own split lists).
    # What a mistake in the configuration can break is built before a numbered folder is made.
    run = reopen_run(resume) if resume else new_run(run_root, state)
    train_dl, val_dl, prep = build_dataloaders(run.splits, seed=seed)
    model, spec = build_model()
    loss_fn = build_loss()
    scene_pairs, empty_scenes = eval_sets(eval_roots)
    if resume:
        check_same_network(run, spec)
    else:
        run = create_run(run_root, run, spec, state.is_main_process)
    run_dir = run.path
    accelerator = make_accelerator(run_dir, cpu, mixed_precision, grad_accum, log_with)
    # exports find their run from anywhere; `data` lets evaluate.py tell a model its training photos
    info = ModelInfo(spec, prep, {"run_dir": str(run_dir.resolve())} | ({"data": run.data} if run.data else {}))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    model, optimizer, train_dl, val_dl = accelerator.prepare(model, optimizer, train_dl, val_dl)
    folder = RunFolder(run_dir, accelerator, info, keep_checkpoints)
    if not resume:
        folder.save_training_samples(train_dl.dataset)

    # Steps count optimizer steps of this process's loader; the learning rate is a function of
    # the loop's state (lr_factor), so the state is all a resume needs.
    steps_per_epoch = math.ceil(len(train_dl) / grad_accum)
    planned_steps = min(max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
    loop = folder.load_state() if resume else LoopState(total_steps=planned_steps)
    if resume:
        accelerator.print(f"resuming {run_dir} at step {loop.step} of {loop.total_steps}")
    batch_size = train_dl.total_batch_size
    start_trackers(accelerator, run_dir, info, lr=lr, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum)
    accelerator.print(banner(run_dir, info, model, run.splits, loop, accelerator))

    stop, budget = StopRequest(), TimeBudget(max_minutes, planned_steps, steps_per_epoch) if max_minutes else None
    main = accelerator.is_main_process
    progress = tqdm(total=loop.total_steps, initial=loop.step, disable=not main, unit="step", dynamic_ncols=True)
    say = progress.write if main else (lambda message: None)
    first_step, clock_zero = loop.step + 1, time.perf_counter() - loop.seconds  # the clock counts time before a resume
    try:
        # An epoch ends with its end-of-epoch work done; one stopped after its last step is ended here on resume.
        while loop.epochs_done < epochs and not (loop.step >= loop.total_steps and loop.steps_in_epoch == 0):
            epoch, epoch_start, images, speed = loop.epochs_done, time.perf_counter(), 0, 0.0
            train_dl.set_epoch(epoch)  # the shuffle and the augmentation: functions of (seed, epoch)
            skip = loop.steps_in_epoch * grad_accum  # after a resume mid-epoch
            batches = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
            for batch in batches if loop.steps_in_epoch < steps_per_epoch and loop.step < loop.total_steps else ():
                with accelerator.accumulate(model):
                    loss = loss_fn(model(batch["image"].contiguous(memory_format=memory_format)), batch["mask"])
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and clip_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm)
                    set_lr(optimizer, lr * lr_factor(loop.step, loop.total_steps, warmup_steps))
                    optimizer.step()
                    optimizer.zero_grad()
                images += len(batch["image"]) * accelerator.num_processes
                if not accelerator.sync_gradients:
                    continue  # still accumulating
                loop.step += 1
                loss_value, stop_now = gather_step(accelerator, loss, stop)
                if not math.isfinite(loss_value):
                    raise diverged(loss_value, loop.step, epoch, folder)
                loop.epoch_loss = [loop.epoch_loss[0] + loss_value, loop.epoch_loss[1] + 1]
                if loop.step == first_step:
                    folder.write_config(resumed=bool(resume))
                speed = images / (time.perf_counter() - epoch_start)
                progress.update(1)
                progress.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.4f}", img_s=f"{speed:.1f}")
                if loop.step % log_every == 0:
                    scalars = {
                        "train/loss": loss_value,
                        "train/lr": lr * lr_factor(loop.step, loop.total_steps, warmup_steps),
                    }
                    accelerator.log(scalars | {"train/images_per_s": speed}, step=loop.step)
                if stop_now:
                    loop.seconds = time.perf_counter() - clock_zero
                    folder.save_state(loop)
                    raise interrupted(loop.step, epoch, run_dir)
                if loop.step >= loop.total_steps:
                    break

            val = validate(model, val_dl, loss_fn, accelerator)
            if main and (scene_pairs or empty_scenes):
                val |= score_scenes(
                    accelerator.unwrap_model(model), info, accelerator.device, scene_pairs, empty_scenes
                )
            improved = loop.end_epoch(epoch + 1, val, speed)
            accelerator.log({f"val/{k}": v for k, v in val.items() if k != "n"} | {"epoch": epoch + 1}, step=loop.step)
            say(epoch_line(epoch + 1, epochs, loop, val, speed, improved))
            loop.seconds, epoch_s = time.perf_counter() - clock_zero, time.perf_counter() - epoch_start
            if budget and (total := budget.fit(loop, epoch_s)) != loop.total_steps:
                say(f"train.max_minutes={max_minutes}: schedule set to {total} steps")
                loop.total_steps = progress.total = total
            folder.save_weights(model, loop, epoch + 1, val, improved)
            if (epoch + 1) % pics_every == 0 or loop.step >= loop.total_steps or epoch + 1 == epochs:
                folder.save_preview(model, run.splits["val"][:num_preview], epoch + 1, loop.step)
            folder.save_state(loop)
    finally:
        progress.close()

    accelerator.wait_for_everyone()
    if main:
        folder.write_config(resumed=bool(resume))  # again: configurables first called after step 1 are in it now
        results = {"run": str(run_dir), "steps": loop.step, "training_minutes": round(loop.seconds / 60, 1)}
        results |= {"best": loop.best, "history": loop.history}
        results |= test_and_export(run_dir, info, run.splits, export_formats, accelerator.device, accelerator.print)
        if scene_pairs or empty_scenes:
            best, _ = load_checkpoint(run_dir / "weights" / "best.pt")
            results["scenes"] = score_scenes(best, info, accelerator.device, scene_pairs, empty_scenes)
        accelerator.print(f"done: {folder.write_metrics(results)}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def interrupted(step: int, epoch: int, run_dir: Path) -> Interrupted:
    return Interrupted(
        f"stopped at step {step} (epoch {epoch + 1}); checkpoint saved in {run_dir}/checkpoints. "
        f"Continue with: python train.py --resume {run_dir}"
    )


def diverged(loss_value: float, step: int, epoch: int, folder: RunFolder) -> Diverged:
    last = folder.last_checkpoint()
    where = f"The last good checkpoint is {last} (resume with --resume {folder.path}). " if last else ""
    return Diverged(
        f"the training loss became {loss_value} at step {step} (epoch {epoch + 1}); stopped. {where}"
        "Try a lower train.lr, train.mixed_precision='bf16' instead of 'fp16', or check the data."
    )
