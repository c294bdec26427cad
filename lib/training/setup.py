"""The run's set-up beside the loop: devices, the run to start, trackers, and the lines it prints."""

import os
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration, parse_flag_from_env

from lib.live.errors import UserError
from lib.live.files import check_writable
from lib.live.model_info import ModelInfo
from lib.training.data import data_recipe
from lib.training.model import count_parameters
from lib.training.run_folder import LoopState, Run, default_wandb_mode


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
        state.print(report if report.startswith("warning: ") else f"note: {report}")
    if not splits["val"]:
        raise UserError("make_splits.split leaves no validation pairs; validation picks the best checkpoint")
    return Run(None, splits, recipe.to_dict())


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


def epoch_line(epoch: int, epochs: int, loop: LoopState, val: dict, speed: float, improved: bool) -> str:
    return (
        f"epoch {epoch}/{epochs} step {loop.step}: train loss {loop.history[-1]['train_loss']:.4f}, "
        f"val loss {val['loss']:.4f}, val IoU {val['iou']:.4f} (mean {val['mean_iou']:.4f}), {speed:.0f} img/s"
        + (f", scenes IoU {val['scene_iou']:.4f}" if "scene_iou" in val else "")
        + (f", false person {100 * val['false_person']:.2f} %" if "false_person" in val else "")
        + ("  *best*" if improved else "")
    )
