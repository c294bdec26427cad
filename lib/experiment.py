"""Run folders: numbering, checkpoints that survive a kill, and what the trackers receive."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

CHECKPOINT_RE = re.compile(r"^step_(\d+)$")


def new_run_dir(root: str | Path) -> Path:
    """Create experiments/exp<N+1>. mkdir is atomic, so two runs started at once never share one."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(r"exp(\d+)", p.name))]
    number = max(taken, default=0) + 1
    while True:
        path = root / f"exp{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints, oldest first (a half-written one is still named .tmp)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def commit_checkpoint(tmp: Path, final: Path, keep: int) -> None:
    """Move a fully written checkpoint into place, then drop the oldest beyond `keep`."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in checkpoints(final.parent.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def log_image(accelerator, name: str, image_rgb: np.ndarray, step: int) -> None:
    """Send one HxWx3 uint8 picture to every tracker that takes pictures."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({name: image_rgb[None]}, step=step, dataformats="NHWC")
        elif tracker.name == "wandb":
            tracker.log_images({name: [image_rgb]}, step=step)


def default_wandb_mode() -> None:
    """Offline unless the user has set wandb up: an online attempt without a login hangs."""
    if "WANDB_MODE" in os.environ or os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path.home() / ".netrc"
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return
    os.environ["WANDB_MODE"] = "offline"
