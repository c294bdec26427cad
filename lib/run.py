"""What a training run writes into its folder: checkpoints, weights, pictures, final results.

The loop in lib/train.py decides when; this module knows where and how, so the loop stays short.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import gin
import numpy as np
from accelerate.utils import broadcast_object_list

from lib import evaluate, experiment
from lib.errors import UserError
from lib.export import export_all
from lib.inference import Segmenter, torch_backend
from lib.model import load_checkpoint, save_checkpoint
from lib.pairs import read_image, read_mask
from lib.pictures import prediction_row, save_curves, save_grid


@dataclass
class LoopState:
    """Everything the loop needs besides the Accelerate state to continue after a resume."""

    step: int = 0
    total_steps: int = 0
    history: list = field(default_factory=list)
    best: dict | None = None
    epoch_loss: list = field(default_factory=lambda: [0.0, 0])  # sum, count in the current epoch

    def end_epoch(self, epoch: int, val: dict, images_per_s: float) -> bool:
        """Record an epoch's scores; True when its validation IoU is the best so far."""
        train_loss = self.epoch_loss[0] / max(1, self.epoch_loss[1])
        self.epoch_loss = [0.0, 0]
        self.history.append({"epoch": epoch, "step": self.step, "train_loss": train_loss, "val_loss": val["loss"],
                             "val_iou": val["iou"], "val_mean_iou": val["mean_iou"],
                             "images_per_s": images_per_s})  # fmt: skip
        improved = self.best is None or val["iou"] > self.best["val"]["iou"]
        if improved:
            self.best = {"epoch": epoch, "step": self.step, "val": val}
        return improved


def open_run_dir(run_root: str, resume: str | None, is_main: bool) -> Path:
    """A new experiments/expN (chosen on the main process and shared), or the run to resume."""
    if resume:
        run_dir = Path(resume)
        if not experiment.checkpoints(run_dir):
            raise UserError(f"--resume {resume}: no finished checkpoint in {run_dir / 'checkpoints'}")
        return run_dir
    chosen = [str(experiment.new_run_dir(run_root)) if is_main else None]
    broadcast_object_list(chosen)
    return Path(chosen[0])


class RunFolder:
    """experiments/expN and the accelerator that writes into it (main process only, where it matters)."""

    def __init__(self, path: Path, accelerator, info: dict, keep_checkpoints: int = 2):
        self.path = path
        self.accelerator = accelerator
        self.info = info  # model spec + preprocessing, stored in every weights file
        self.keep = keep_checkpoints

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def save_state(self, loop: LoopState) -> None:
        """Accelerate state + loop state, written to .tmp and renamed: a kill mid-save keeps the last one."""
        tmp = self.path / "checkpoints" / f"step_{loop.step}.tmp"
        self.accelerator.save_state(str(tmp))
        if self.main:
            experiment.write_json(tmp / "loop.json", asdict(loop))
            experiment.commit_checkpoint(tmp, self.path / "checkpoints" / f"step_{loop.step}", self.keep)
        self.accelerator.wait_for_everyone()

    def load_state(self) -> LoopState:
        step, ckpt = experiment.checkpoints(self.path)[-1]
        self.accelerator.load_state(str(ckpt))
        loop = LoopState(**json.loads((ckpt / "loop.json").read_text()))
        assert loop.step == step, f"{ckpt}: loop.json says step {loop.step}"
        return loop

    def write_config(self) -> None:
        if self.main:
            (self.path / "operative_config.gin").write_text(gin.operative_config_str())

    def save_weights(self, model, loop: LoopState, epoch: int, val: dict, improved: bool) -> None:
        if not self.main:
            return
        net = self.accelerator.unwrap_model(model)
        meta = {"run_dir": str(self.path.resolve()), "epoch": epoch, "step": loop.step, "val": val}
        save_checkpoint(self.path / "weights" / "last.pt", net, self.info["model"], self.prep, meta)
        if improved:
            save_checkpoint(self.path / "weights" / "best.pt", net, self.info["model"], self.prep, meta)
        save_curves(self.path / "pics" / "curves.png", loop.history)

    @property
    def prep(self):
        from lib.preprocess import Preprocess

        return Preprocess.from_dict(self.info["preprocess"])

    def save_preview(self, model, pairs, epoch: int, step: int) -> None:
        """image | truth | prediction | blurred background for fixed validation photos."""
        if not self.main:
            return
        net = self.accelerator.unwrap_model(model)
        was_training = net.training
        segmenter = Segmenter(torch_backend(net, self.accelerator.device), self.info, "preview")
        rows = []
        for pair in pairs:
            image, truth = read_image(pair.image_path), read_mask(pair.mask_path, pair.layout)
            rows.append(prediction_row(image, truth, segmenter(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))))
        net.train(was_training)
        save_grid(self.path / "pics" / f"val_epoch{epoch:03d}.png", rows)
        strip = np.vstack([cv2.resize(r, (768, 192)) for r in rows])
        experiment.log_image(self.accelerator, "val/preview", strip, step)

    def finish(self, splits: dict, loop: LoopState, export_formats) -> dict:
        """Main process: score the best weights on the test split, export them, write metrics.json."""
        say = self.accelerator.print
        self.write_config()  # again: configurables first called after step 1 are in it now
        model, _ = load_checkpoint(self.path / "weights" / "best.pt")
        results = {"run": str(self.path), "steps": loop.step, "best": loop.best, "history": loop.history}
        if splits["test"]:
            segmenter = Segmenter(torch_backend(model, self.accelerator.device), self.info, "best.pt")
            test = evaluate.score(segmenter, splits["test"], num_workers=0, progress=False)
            results["test"] = {k: v for k, v in test.items() if k not in ("worst", "per_image")}
            evaluate.save_worst(self.path / "pics" / "test_worst.png", segmenter, splits["test"], test)
            say(f"test ({test['n']} photos, at mask resolution): IoU {test['iou']:.4f}, "
                f"mean IoU {test['mean_iou']:.4f}, boundary F {test['boundary_f']:.4f}")  # fmt: skip
        if export_formats:
            results["exports"] = export_all(model, self.info, self.path / "weights", "best", export_formats)
            for r in results["exports"].values():
                say(f"exported {r['path']} (max |diff| vs eager {r['max_abs_diff']:.1e})")
        experiment.write_json(self.path / "metrics.json", results)
        say(f"done: {self.path}/metrics.json")
        return results
