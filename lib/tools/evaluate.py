"""evaluate.py: score any model file on its run's split or on data roots, print a table, write json
and a picture of the worst photos."""

import json
import time
from pathlib import Path

from lib.live.checks import check_number
from lib.live.errors import UserError, shown
from lib.live.files import check_output_file, special, write_text
from lib.live.model_info import ModelInfo
from lib.live.preprocess import with_boxes
from lib.live.segmenter import load_segmenter
from lib.training.failures import is_out_of_memory
from lib.training.pairs import Pair, pairs_under
from lib.training.provenance import split_of, trained_on
from lib.training.scoring import save_worst, score
from lib.training.splits import SPLIT_NAMES

SPLIT_CHOICES = (*SPLIT_NAMES, "all")


def select_pairs(
    model_path: Path, info: ModelInfo, data: list[str] | None, split: str | None
) -> tuple[list[Pair], str, Path | None]:
    """Which photos to score: --data roots (all pairs), else the model's own split (lib.training.provenance)."""
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
    pairs, run_dir = split_of(model_path, info, split)
    return pairs, split, run_dir


def format_table(result: dict) -> str:
    cols = ("n", "iou", "mean_iou", "median_iou", "dice", "boundary_f", "pixel_acc", "loss")
    by_root = [(shown(Path(r).name), m) for r, m in result["by_root"].items()]
    rows = [("all", result)] + by_root * (len(by_root) > 1)
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
    input_size: str | None = None,
    landscape_size: str | None = None,
) -> dict:
    """Load any model file, score it, print a table, write json and pictures of the worst images.

    refine: scale each probability up to its photo along the photo's edges (the webcam's --refine).
    input_size: 'HEIGHTxWIDTH', the network run at another input box than its file's (the networks
    are fully convolutional: what a larger input buys, measured before shipping it).
    landscape_size: 'HEIGHTxWIDTH', the box for photos wider than tall only.
    """
    check_number("--batch-size", batch_size, integer=True, low=1, high=4096)
    check_number("--workers", num_workers, integer=True, low=0, high=64)
    out = check_output_file(json_out, "--json") if json_out else None  # before the evaluation, not after
    model_path = Path(ckpt)
    segmenter = load_segmenter(model_path, backend=backend, device=device)
    segmenter.refine = refine
    segmenter.prep = with_boxes(segmenter.prep, input_size, landscape_size)
    pairs, split, run_dir = select_pairs(model_path, segmenter.info, data, split)
    if data and (seen := trained_on(model_path, segmenter.info, pairs)):
        print(
            f"warning: {seen} of these {len(pairs)} photos are in {model_path.name}'s training split: it has seen "
            "them, so this score flatters it (leave out --data to score its test split)"
        )
    start = time.perf_counter()
    try:
        result = score(segmenter, pairs, batch_size, tta, num_workers, progress=progress)
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        raise UserError(
            f"out of memory scoring with --batch-size {batch_size} and --workers {num_workers}: lower them"
        ) from None
    result.update(
        model=str(model_path),
        backend=segmenter.name,
        split=split,
        tta=tta,
        refine=refine,
        input_size=list(segmenter.prep.input_size),
        landscape_size=list(segmenter.prep.box_for(3, 4)),  # the box a landscape photo gets
        seconds=time.perf_counter() - start,
        data=sorted({p.root for p in pairs}),
    )
    extras = (
        (f", input {segmenter.prep.boxes_text()}" if input_size or landscape_size else "")
        + (", flip TTA" if tta else "")
        + (", refined at full size" if refine else "")
    )
    print(f"{segmenter.name} on {split} ({len(pairs)} photos{extras}):")
    print(format_table(result))
    if out is not None:
        write_text(out, json.dumps(result, indent=2), flag="--json")  # into a device or pipe, never over it
        pics = out.with_name(out.stem + "_worst.png")
        if special(out):  # /dev/null_worst.png would be a new file among the devices
            print(f"note: --json {shown(out)} is {special(out)}: the worst photos' picture goes beside a file only")
            pics = None
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
