"""The run folder, experiments/expN: everything a training run writes, and where.

    expN/run.json                    what the run trains on (data roots, split, seed) and its network
    expN/operative_config.gin        the whole configuration as gin saw it (after step 1 and at the end)
    expN/splits/{train,val,test}.tsv the photos of each split
    expN/checkpoints/step_N/         Accelerate state + loop.json; the last `keep` of them
    expN/weights/{best,last}.pt      self-describing weights; best.ts / best.onnx when exported
    expN/pics/                       validation previews per epoch, curves, worst test photos
    expN/logs/                       TensorBoard and WandB
    expN/metrics.json                history, best epoch, test scores, export checks

The loop in lib/training/train.py decides when; this module knows where and how. Every file and
checkpoint is written under a temporary name and renamed when complete (lib/live/files.py), so a
kill or a full disk never leaves half of one, and the one before is kept.
"""

import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import gin
import numpy as np
from accelerate.utils import broadcast_object_list

from lib.live.errors import UserError
from lib.live.files import WriteFailed, cause, check_writable, write_text
from lib.live.model_info import ModelInfo, ModelSpec
from lib.live.preprocess import to_rgb
from lib.live.segmenter import Segmenter
from lib.training.failures import is_disk_full
from lib.training.inference import torch_backend
from lib.training.masks import read_target
from lib.training.model import save_checkpoint
from lib.training.pairs import Pair, read_photo
from lib.training.pictures import prediction_row, save_curves, save_grid, save_picture
from lib.training.splits import SPLIT_NAMES, read_split, write_split

CHECKPOINT_RE = re.compile(r"^step_(\d+)$")
RECORD = "run.json"
SAMPLE_SIDE = 384  # the longest side of a training sample in pics/train_samples.png


@dataclass
class LoopState:
    """Everything the loop needs besides the Accelerate state to continue after a resume."""

    step: int = 0
    total_steps: int = 0
    history: list = field(default_factory=list)
    best: dict | None = None
    epoch_loss: list = field(default_factory=lambda: [0.0, 0])  # sum, count in the current epoch
    seconds: float = 0.0  # training time so far, over every resume: what train.max_minutes counts
    epoch_seconds: list = field(default_factory=list)  # each epoch's time: train.max_minutes' pace

    @property
    def epochs_done(self) -> int:
        """Epochs whose end-of-epoch work (validation, weights, checkpoint) is done. A run stopped
        after an epoch's last step but before that work is at the same step as one stopped after
        it: this, not the step, says which, so a resume finishes the epoch it stopped in."""
        return len(self.history)

    @property
    def steps_in_epoch(self) -> int:
        """Optimizer steps taken in the epoch not yet ended (the batches a resume skips)."""
        return self.epoch_loss[1]

    def end_epoch(self, epoch: int, val: dict, images_per_s: float, can_be_best: bool = True) -> bool:
        """Record an epoch's scores; True when its validation IoU is the best so far (never for an
        epoch that diverged: `can_be_best`)."""
        train_loss = self.epoch_loss[0] / max(1, self.epoch_loss[1])
        self.epoch_loss = [0.0, 0]
        scores = {"val_loss": val["loss"], "val_iou": val["iou"], "val_mean_iou": val["mean_iou"]}
        scores |= {k: v for k, v in val.items() if k.startswith(("scene_", "iou_", "false_person"))}
        self.history.append(
            {"epoch": epoch, "step": self.step, "train_loss": train_loss, **scores, "images_per_s": images_per_s}
        )
        improved = can_be_best and (self.best is None or val["iou"] > self.best["val"]["iou"])
        if improved:
            self.best = {"epoch": epoch, "step": self.step, "val": val}
        return improved


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


@dataclass
class Run:
    """A run's folder (None until it is created), its splits, and what it trains on as plain data:
    `data` the recipe's roots, split and seed, `model` the network's spec (None for runs written
    before run.json)."""

    path: Path | None
    splits: dict[str, list[Pair]]
    data: dict | None = None
    model: dict | None = None


def create_run(run_root: str, run: Run, spec: ModelSpec, is_main: bool) -> Run:
    """A new experiments/expN (chosen on the main process, shared with the others) holding the
    split lists and run.json. Called once the data, loaders and model are built."""
    chosen = [str(new_run_dir(run_root)) if is_main else None]
    broadcast_object_list(chosen)
    created = Run(Path(chosen[0]), run.splits, run.data, spec.to_dict())
    if is_main:
        save_splits(created.path, created.splits)
        write_json(created.path / RECORD, {"data": created.data, "model": created.model})
    return created


def reopen_run(run_dir: str) -> Run:
    """The run to resume: its split lists and record, read back; nothing is made again."""
    path = Path(run_dir)
    if not checkpoints(path):
        raise UserError(f"--resume {run_dir}: no finished checkpoint in {path / 'checkpoints'}")
    check_writable(path, "--resume")
    record = json.loads((path / RECORD).read_text()) if (path / RECORD).is_file() else {}
    return Run(path, load_splits(path), record.get("data"), record.get("model"))


def check_same_network(run: Run, spec: ModelSpec) -> None:
    """--resume with a configuration that builds another network: one line, not the weights' names."""
    if run.model is not None and not ModelSpec.from_dict(run.model).same_network(spec):
        raise UserError(
            f"--resume {run.path}: the run trains {ModelSpec.from_dict(run.model)} but this configuration "
            f"builds {spec}; resume with the run's own configuration (drop the --gin or --gin-param that changes "
            "build_model)"
        )


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints, oldest first (a half-written one is still named .tmp)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def save_splits(run_dir: Path, splits: dict[str, list[Pair]]) -> None:
    (run_dir / "splits").mkdir(parents=True, exist_ok=True)
    for name, pairs in splits.items():
        write_split(run_dir / "splits" / f"{name}.tsv", pairs)


def load_splits(run_dir: Path) -> dict[str, list[Pair]]:
    return {name: read_split(run_dir / "splits" / f"{name}.tsv") for name in SPLIT_NAMES}


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2))


def default_wandb_mode() -> None:
    """Offline and silent unless the user has set wandb up: an online attempt without a login
    hangs, and offline wandb prints some 30 lines around a run that bury the run's own."""
    if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY"):
        netrc = Path.home() / ".netrc"
        if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
            os.environ["WANDB_MODE"] = "offline"
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")  # no capture of the run's own output


class RunFolder:
    """experiments/expN and the accelerator that writes into it (main process only, where it matters)."""

    def __init__(self, path: Path, accelerator, info: ModelInfo, keep_checkpoints: int = 2):
        self.path = path
        self.accelerator = accelerator
        self.info = info  # stored in every weights file
        self.keep = keep_checkpoints

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def pics(self, name: str) -> Path:
        return self.path / "pics" / name

    def save_state(self, loop: LoopState) -> None:
        """Accelerate state + loop state, written to .tmp and renamed; the oldest beyond `keep` go.

        A save that fails (a full disk) removes its half and stops the run in one line; the
        checkpoints before it are kept, so --resume continues from the last good one (advice for a
        full disk, and for a run with no checkpoint yet, is added by lib.training.failures.RunGuard)."""
        tmp = self.path / "checkpoints" / f"step_{loop.step}.tmp"
        try:
            self.accelerator.save_state(str(tmp))
            if self.main:
                write_json(tmp / "loop.json", asdict(loop))
                final = tmp.with_suffix("")
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
        except Exception as error:  # torch and safetensors report a full disk in their own words and types
            full = is_disk_full(error, tmp, writing=True)  # asked before the half is removed: it holds the last bytes
            shutil.rmtree(tmp, ignore_errors=True)
            if not (full or isinstance(error, OSError | RuntimeError)):
                raise
            last = self.last_checkpoint()
            if full:
                reason = "no space left on the disk (ENOSPC)"
            else:
                reason = cause(error) if isinstance(error, OSError) else str(error).strip().splitlines()[0][:200]
            advice = ""
            if last and not full:
                advice = f"; the last good checkpoint {last.name} is kept: python train.py --resume {self.path}"
            raise WriteFailed(f"could not save checkpoint {tmp.with_suffix('')}: {reason}{advice}") from None
        if self.main:
            for _, old in checkpoints(self.path)[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def last_checkpoint(self) -> Path | None:
        found = checkpoints(self.path)
        return found[-1][1] if found else None

    def load_state(self) -> LoopState:
        """The newest checkpoint that reads back whole; a damaged one (a truncated file) is passed
        over with one line for the one before it (two are kept for this)."""
        found = checkpoints(self.path)[::-1]
        for n, (step, ckpt) in enumerate(found):
            try:
                self.accelerator.load_state(str(ckpt))
                loop = LoopState(**json.loads((ckpt / "loop.json").read_text()))
                if loop.step != step:
                    raise ValueError(f"loop.json says step {loop.step}")
                return loop
            except Exception as error:  # noqa: BLE001 - whatever broke the file, the one before may be whole
                reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:120] if str(error) else ''}"
                if n + 1 == len(found):
                    raise UserError(
                        f"--resume {self.path}: no checkpoint reads back whole ({ckpt.name}: {reason})"
                    ) from None
                print(
                    f"note: checkpoint {ckpt} is damaged ({reason}); resuming from {found[n + 1][1].name}",
                    file=sys.stderr,
                )
        raise UserError(f"--resume {self.path}: no finished checkpoint in {self.path / 'checkpoints'}")

    def write_config(self, resumed: bool = False) -> None:
        """gin's operative config: what the run's configurables were called with. A resumed run
        calls fewer (it reads its split lists instead of making them), so it writes the whole
        configuration it was given: its own operative config plus any overrides."""
        if self.main:
            write_text(self.path / "operative_config.gin", gin.config_str() if resumed else gin.operative_config_str())

    def save_weights(self, model, loop: LoopState, epoch: int, val: dict, improved: bool) -> None:
        if not self.main:
            return
        net = self.accelerator.unwrap_model(model)
        info = self.info.with_meta(run_dir=str(self.path.resolve()), epoch=epoch, step=loop.step, val=val)
        save_checkpoint(self.path / "weights" / "last.pt", net, info)
        if improved:
            save_checkpoint(self.path / "weights" / "best.pt", net, info)
        save_curves(self.pics("curves.png"), loop.history)

    def save_preview(self, model, pairs: list[Pair], epoch: int, step: int) -> None:
        """image | truth | prediction | blurred background for fixed validation photos."""
        if not self.main:
            return
        net = self.accelerator.unwrap_model(model)
        was_training = net.training
        segmenter = Segmenter(torch_backend(net, self.accelerator.device), self.info, "preview")
        rows = []
        for pair in pairs:
            try:
                frame, truth = read_photo(pair.image_path), read_target(pair)
            except OSError:  # broken since the split; training skipped it too, with a warning
                continue
            rows.append(prediction_row(to_rgb(frame), truth, segmenter(frame)))
        net.train(was_training)
        if not rows:
            return
        save_grid(self.pics(f"val_epoch{epoch:03d}.png"), rows)
        self.log_image("val/preview", np.vstack([cv2.resize(r, (768, 192)) for r in rows]), step)

    def save_training_samples(self, dataset, n: int = 10) -> None:
        """What the model learns from: n samples of the first epoch as the loader makes them, spread
        over the training set (every root), portrait and landscape, each above its target (person
        green, unknown purple)."""
        if not self.main:
            return
        rows = []
        for landscape in (False, True):
            tiles = []
            for i in sorted({round(x) for x in np.linspace(0, len(dataset) - 1, min(n, len(dataset)))}):
                image, target = dataset.transform.compose(*dataset.load(i), seed=i, landscape=landscape, index=i)
                shown = image.copy()
                shown[target == 1] = shown[target == 1] // 2 + np.array([0, 127, 0], np.uint8)
                shown[target == 255] = shown[target == 255] // 2 + np.array([110, 0, 110], np.uint8)
                tile, scale = np.vstack([image, shown]), SAMPLE_SIDE / max(image.shape[:2])
                if scale < 1:  # a picture to look at, not ten 3072-pixel inputs side by side
                    size = (round(tile.shape[1] * scale), round(tile.shape[0] * scale))
                    tile = cv2.resize(tile, size, interpolation=cv2.INTER_AREA)
                tiles.append(tile)
            rows.append(np.hstack(tiles))
        width = max(r.shape[1] for r in rows)
        grid = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
        save_picture(self.pics("train_samples.png"), grid)

    def log_image(self, name: str, image_rgb: np.ndarray, step: int) -> None:
        """One HxWx3 uint8 picture to every tracker that takes pictures."""
        for tracker in self.accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({name: image_rgb[None]}, step=step, dataformats="NHWC")
            elif tracker.name == "wandb":
                tracker.log_images({name: [image_rgb]}, step=step)

    def write_metrics(self, results: dict) -> Path:
        write_json(self.path / "metrics.json", results)
        return self.path / "metrics.json"
