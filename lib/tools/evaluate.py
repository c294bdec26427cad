"""Score a model on photos at each mask's own resolution: what a user of the mask would see."""

import heapq
import json
import time
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from lib.live.checks import check_number
from lib.live.errors import UserError
from lib.live.files import check_output_file, write_text
from lib.live.model_info import ModelInfo
from lib.training import metrics
from lib.training.config import ROOT
from lib.training.data import DataRecipe, recipe_bindings
from lib.training.inference import Segmenter, load_segmenter
from lib.training.pairs import IGNORE, SPLIT_NAMES, Pair, pairs_under, read_split, read_target
from lib.training.pictures import prediction_row, save_grid

SPLIT_CHOICES = (*SPLIT_NAMES, "all")


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
        image = cv2.imread(str(pair.image_path), cv2.IMREAD_COLOR)
        if image is None:
            return i, None, f"{pair.image_path}: not a readable image"
        try:
            mask = read_target(pair)  # 0, 1, IGNORE
        except OSError as error:
            return i, None, str(error)
        if mask.shape != image.shape[:2]:
            return i, None, f"{pair.mask_path}: mask {mask.shape} and image {image.shape[:2]} differ in size"
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
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise UserError(f"{path}: not a readable image")
            frames.append(frame)
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
        rows.append(prediction_row(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), truth, prob, with_errors=True))
        titles.append(f"IoU {result['per_image'][i]['iou']:.3f}  {pairs[i].image}")
    if rows:
        save_grid(path, rows, titles)


def find_run_dir(model_path: Path, info: ModelInfo) -> Path | None:
    """The run folder that wrote this model: recorded in its metadata, or two levels up."""
    candidates = [Path(info.meta.get("run_dir", "")), model_path.resolve().parent.parent]
    return next((c for c in candidates if str(c) not in ("", ".") and (c / "splits").is_dir()), None)


def select_pairs(
    model_path: Path, info: ModelInfo, data: list[str] | None, split: str | None
) -> tuple[list[Pair], str, Path | None]:
    """Which photos to score: --data roots (all pairs), the run's own split lists, or, for a shipped
    model whose run folder is elsewhere, its recipe's split made again (models/README.md)."""
    if split is not None and split not in SPLIT_CHOICES:
        raise UserError(f"--split {split}: expected one of {', '.join(SPLIT_CHOICES)}")
    if data:
        if split not in (None, "all"):
            raise UserError(
                f"--split {split} with --data: a run's splits cover only its own data; "
                "use --split all, or leave out --data to use the run's split lists"
            )
        return pairs_under(data), "all", None
    split = split or "test"
    names = SPLIT_NAMES if split == "all" else (split,)
    run_dir = find_run_dir(model_path, info)
    recipe, source = recipe_of(info)
    if run_dir is None and recipe is not None:
        splits, reports = recipe.make()
        for report in reports:
            print(report)
        print(f"photos: the {split} split of {source}, made again from its roots, fractions and seed")
        return [pair for name in names for pair in splits[name]], split, None
    if run_dir is None:
        raise UserError(
            f"{model_path}: no run folder with split lists found (looked in its metadata and "
            f"{model_path.resolve().parent.parent}/splits); pass --data ROOT to score a data folder"
        )
    pairs = []
    for name in names:
        path = run_dir / "splits" / f"{name}.tsv"
        if not path.is_file():
            raise UserError(
                f"--split {split}: the run {run_dir} never wrote {path.name} (found: "
                f"{sorted(p.name for p in (run_dir / 'splits').glob('*.tsv'))})"
            )
        pairs += read_split(path)
    if not pairs:
        raise UserError(f"--split {split}: the run {run_dir} has no pairs in that split")
    return pairs, split, run_dir


def recipe_of(info: ModelInfo) -> tuple[DataRecipe | None, str]:
    """The data a model's run trained on, from its file alone: the roots, split and seed it carries
    (`data`), or those of the recipe it names (`recipe`, files shipped before they carried `data`)."""
    if info.meta.get("data"):
        return DataRecipe.from_dict(info.meta["data"]), info.meta.get("recipe", "its run")
    recipe = ROOT / info.meta.get("recipe", "no recipe")
    if recipe.is_file():
        return DataRecipe(**recipe_bindings([str(recipe)])), info.meta["recipe"]
    return None, ""


def seen_in_training(model_path: Path, info: ModelInfo, pairs: list[Pair]) -> int:
    """How many of `pairs` the model trained on: its run's train split list, else its recipe's split
    made again (only when the recipe's roots are among the photos' own)."""
    run_dir = find_run_dir(model_path, info)
    if run_dir is not None and (run_dir / "splits" / "train.tsv").is_file():
        try:
            trained = read_split(run_dir / "splits" / "train.tsv")
        except UserError:  # the run's data moved: nothing to compare with
            return 0
    else:
        recipe, _ = recipe_of(info)
        roots = {Path(p.root).resolve() for p in pairs}
        if recipe is None or not roots & {Path(r).resolve() for r in recipe.roots}:
            return 0
        trained = recipe.make()[0]["train"]
    return len({p.image_path.resolve() for p in trained} & {p.image_path.resolve() for p in pairs})


def format_table(result: dict) -> str:
    cols = ("n", "iou", "mean_iou", "median_iou", "dice", "boundary_f", "pixel_acc", "loss")
    rows = [("all", result)] + [(Path(r).name, m) for r, m in result["by_root"].items()] * (len(result["by_root"]) > 1)
    rows += [(f"  {c.split('/', 1)[1]}", m) for c, m in result.get("by_clip", {}).items()]
    lines = [f"{'data':<20}" + "".join(f"{c:>11}" for c in cols)]
    for name, m in rows:
        lines.append(f"{name[:20]:<20}" + "".join(f"{m[c]:>11d}" if c == "n" else f"{m[c]:>11.4f}" for c in cols))
    return "\n".join(lines)


def evaluate(
    ckpt: str,
    data: list[str] | None = None,
    split: str | None = None,
    json_out: str | None = None,
    tta: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    backend: str | None = None,
    num_workers: int = 2,
    progress: bool = True,
    refine: bool = False,
) -> dict:
    """Load any model file, score it, print a table, write json and pictures of the worst images.

    refine: scale each probability up to its photo along the photo's edges (the webcam's --refine).
    """
    check_number("--batch-size", batch_size, integer=True, low=1, high=4096)
    check_number("--workers", num_workers, integer=True, low=0, high=64)
    out = check_output_file(json_out, "--json") if json_out else None  # before the evaluation, not after
    model_path = Path(ckpt)
    segmenter = load_segmenter(model_path, backend=backend, device=device)
    segmenter.refine = refine
    pairs, split, run_dir = select_pairs(model_path, segmenter.info, data, split)
    if data and (seen := seen_in_training(model_path, segmenter.info, pairs)):
        print(
            f"warning: {seen} of these {len(pairs)} photos are in {model_path.name}'s training split: it has seen "
            "them, so this score flatters it (leave out --data to score its test split)"
        )
    start = time.perf_counter()
    result = score(segmenter, pairs, batch_size, tta, num_workers, progress=progress)
    result.update(
        model=str(model_path),
        backend=segmenter.name,
        split=split,
        tta=tta,
        refine=refine,
        seconds=time.perf_counter() - start,
        data=sorted({p.root for p in pairs}),
    )
    extras = (", flip TTA" if tta else "") + (", refined at full size" if refine else "")
    print(f"{segmenter.name} on {split} ({len(pairs)} photos{extras}):")
    print(format_table(result))
    if out is not None:
        write_text(out, json.dumps(result, indent=2))
        pics = out.with_name(out.stem + "_worst.png")
    elif run_dir is not None and run_dir.resolve() in model_path.resolve().parents:
        pics = run_dir / "pics" / f"eval_{split}_{model_path.name.replace('.', '_')}_worst.png"
    elif run_dir is not None:  # a copy of the model elsewhere: its pictures stay with it, not in the run
        pics = model_path.with_name(f"{model_path.stem}_eval_{split}_worst.png")
    else:
        pics = None
    if pics is not None:
        save_worst(pics, segmenter, pairs, result, tta)
        print(f"worst photos: {pics}")
    return result
