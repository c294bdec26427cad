"""Scores at each mask's own resolution (what a user of the mask would see), for the training loop
and evaluate.py alike: person IoU per photo, root and clip, loss, boundary F, false person on
people-free frames, and a picture of the worst photos."""

import heapq
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.live.errors import UserError, shown
from lib.live.files import WriteFailed
from lib.live.model_info import ModelInfo
from lib.live.preprocess import to_rgb
from lib.live.segmenter import Segmenter
from lib.training import metrics
from lib.training.copy_paste import plate_split
from lib.training.export import export_all
from lib.training.inference import torch_backend
from lib.training.masks import IGNORE, read_target
from lib.training.model import load_checkpoint
from lib.training.pairs import Pair, pairs_under, read_photo
from lib.training.pictures import prediction_row, save_grid


class RawPairs:
    """(index, BGR image, {0,1} mask) at full resolution, decoded in DataLoader workers.

    A file that cannot be used comes back as (index, None, reason), so the main process stops with
    that one line rather than a worker's traceback.
    """

    def __init__(self, pairs: list[Pair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        pair = self.pairs[i]
        try:
            image = read_photo(pair.image_path)
            mask = read_target(pair)  # 0, 1, IGNORE
        except OSError as error:
            return i, None, str(error)
        if mask.shape != image.shape[:2]:
            return i, None, f"{shown(pair.mask_path)}: mask {mask.shape} and image {image.shape[:2]} differ in size"
        return i, image, mask

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        _, image, mask = self[i]
        if image is None:
            raise UserError(mask)
        return image, mask


def _as_list(batch):
    return batch


def bce(prob: np.ndarray, truth: np.ndarray) -> float:
    """Binary cross-entropy of the probability map over the known pixels (the reference's loss, at
    mask resolution)."""
    known = truth != IGNORE
    p = np.clip(prob[known], 1e-7, 1 - 1e-7)
    t = truth[known].astype(np.float32)
    return float(-(t * np.log(p) + (1 - t) * np.log1p(-p)).mean()) if p.size else 0.0


def score(
    segmenter: Segmenter,
    pairs: list[Pair],
    batch_size: int = 8,
    tta: bool = False,
    num_workers: int = 2,
    n_worst: int = 6,
    progress: bool = True,
) -> dict:
    """Metrics over `pairs`, overall and per data root, and the worst images' indices."""
    loader = DataLoader(RawPairs(pairs), batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list)
    stats = np.zeros((len(pairs), 4), np.int64)
    losses, boundaries = np.zeros(len(pairs)), np.zeros(len(pairs))
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
        for _, image, reason in batch:
            if image is None:
                raise UserError(reason)
        probs = segmenter.predict_many([image for _, image, _ in batch], tta=tta)
        for (i, _, truth), prob in zip(batch, probs, strict=True):
            stats[i] = metrics.confusion_np(prob, truth)
            losses[i] = bce(prob, truth)
            boundaries[i] = metrics.boundary_f(prob > 0.5, truth)
    ious = metrics.per_image_iou(stats)

    def summary(index: np.ndarray) -> dict:
        out = metrics.summarize(stats[index])
        out["loss"] = float(losses[index].mean()) if len(index) else float("nan")
        out["boundary_f"] = float(boundaries[index].mean()) if len(index) else float("nan")
        return out

    roots = sorted({p.root for p in pairs})
    by_root = {r: summary(np.array([i for i, p in enumerate(pairs) if p.root == r])) for r in roots}
    clips = [clip_of(p) for p in pairs]
    by_clip = {c: summary(np.array([i for i, k in enumerate(clips) if k == c])) for c in sorted(set(clips) - {None})}
    worst = heapq.nsmallest(n_worst, range(len(pairs)), key=lambda i: ious[i])
    per_image = [
        {"image": str(p.image_path), "iou": float(ious[i]), "boundary_f": float(boundaries[i])}
        for i, p in enumerate(pairs)
    ]
    result = {**summary(np.arange(len(pairs))), "by_root": by_root, "worst": worst, "per_image": per_image}
    return result | ({"by_clip": by_clip} if len(by_clip) > 1 else {})


def clip_of(pair: Pair) -> str | None:
    """`<clip>_<frame number>` names (video frames, e.g. davis_people) belong to a clip: scored per clip too."""
    stem = Path(pair.image).stem
    clip, _, frame = stem.rpartition("_")
    return f"{Path(pair.root).name}/{clip}" if clip and frame.isdigit() else None


def false_person(segmenter, images: list[Path], batch_size: int = 8) -> dict:
    """On people-free frames (every pixel background): the share of pixels called person, overall and
    the worst frame's. Peers call animals people; so may we."""
    shares = []
    for start in range(0, len(images), batch_size):
        frames = []
        for path in images[start : start + batch_size]:
            try:
                frames.append(read_photo(path))
            except OSError as error:
                raise UserError(str(error)) from None
        shares += [float(np.mean(prob > 0.5)) for prob in segmenter.predict_many(frames)]
    return {
        "n": len(shares),
        "share": float(np.mean(shares)) if shares else float("nan"),
        "worst": max(shares, default=0.0),
    }


def save_worst(path: Path, segmenter: Segmenter, pairs: list[Pair], result: dict, tta: bool = False) -> None:
    """image | truth | prediction | blurred preview | error map, for the lowest-IoU photos."""
    rows, titles = [], []
    for i in result["worst"]:
        image, truth = RawPairs(pairs).load(i)
        prob = segmenter.predict_many([image], tta=tta)[0]
        rows.append(prediction_row(to_rgb(image), truth, prob, with_errors=True))
        titles.append(f"IoU {result['per_image'][i]['iou']:.3f}  {shown(pairs[i].image)}")  # OpenCV draws no surrogates
    if rows:
        save_grid(path, rows, titles)


# The training loop's measurements: every epoch (validate, score_scenes) and at the end (test_and_export)


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
        result = score(segmenter, pairs, num_workers=0, progress=False)
        scores["scene_iou"], scores["scene_mean_iou"] = result["iou"], result["mean_iou"]
        scores |= {f"iou_{Path(root).name}": m["iou"] for root, m in result["by_root"].items()}
    if empty:
        scores["false_person"] = false_person(segmenter, empty)["share"]
    model.train(was_training)
    return scores


def test_and_export(run_dir: Path, info: ModelInfo, splits: dict, export_formats, device, say) -> dict:
    """Main process, after training: the best weights scored on the test split and exported."""
    model, _ = load_checkpoint(run_dir / "weights" / "best.pt")
    results = {}
    if splits["test"]:
        segmenter = Segmenter(torch_backend(model, device), info, "best.pt")
        try:
            test = score(segmenter, splits["test"], num_workers=0, progress=False)
        except UserError as error:  # a test photo broken since the split: the run's work is kept all the same
            results["test_error"] = str(error)
            say(f"test split not scored: {error}; once mended: python evaluate.py --ckpt {run_dir}/weights/best.pt")
        else:
            results["test"] = {k: v for k, v in test.items() if k not in ("worst", "per_image")}
            save_worst(run_dir / "pics" / "test_worst.png", segmenter, splits["test"], test)
            say(
                f"test ({test['n']} photos, at mask resolution): IoU {test['iou']:.4f}, "
                f"mean IoU {test['mean_iou']:.4f}, boundary F {test['boundary_f']:.4f}"
            )
    if export_formats:
        try:
            results["exports"] = export_all(model, info, run_dir / "weights", "best", export_formats)
        except (RuntimeError, UserError) as error:  # a check that fails: the run's measurements are kept all the same
            if isinstance(error, WriteFailed) and "(ENOSPC)" in str(error):
                raise  # a full disk: lib.training.failures.RunGuard says what to do
            results["export_error"] = str(error).strip().splitlines()[0]
            return results
        for r in results["exports"].values():
            say(f"exported {r['path']} (max |diff| vs eager {r['max_abs_diff']:.1e})")
    return results
