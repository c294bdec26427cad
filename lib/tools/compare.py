"""Our models and the peers to beat on the same photos: scores per data root, CPU ms per frame, a picture.

python -m scripts.compare_peers --ckpt models/lite.onnx --gin gin/lite.gin
"""

import json
import statistics
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

import lib.training.inference  # noqa: F401  (fills the loader table: .pt and .ts files too)
from lib.live.compose import Compositor, fit_background
from lib.live.errors import UserError
from lib.live.files import check_picture_name, write_image
from lib.live.preprocess import letterbox, read_image
from lib.live.segmenter import load_segmenter
from lib.tools.peers import MediaPipeSelfie, MeetSegmentation, PPHumanSeg
from lib.training.data import recipe_splits
from lib.training.pairs import Pair, pairs_under
from lib.training.scoring import RawPairs, false_person, score


def first_per_root(pairs: list[Pair], n: int) -> list[Pair]:
    """The first n pairs of each data root, in the order given."""
    seen, out = Counter(), []
    for pair in pairs:
        if seen[pair.root] < n:
            out.append(pair)
            seen[pair.root] += 1
    return out


def spread_per_root(pairs: list[Pair], n: int) -> list[Pair]:
    """n pairs of each data root, evenly spread over it (over a root of video frames: several clips)."""
    out = []
    for root in dict.fromkeys(p.root for p in pairs):
        mine = [p for p in pairs if p.root == root]
        out += [mine[i] for i in sorted({round(k * (len(mine) - 1) / max(1, n - 1)) for k in range(n)})]
    return out


def _is_landscape(pair: Pair) -> bool:
    height, width = read_image(pair.image_path, cv2.IMREAD_REDUCED_GRAYSCALE_8).shape  # an eighth: quick
    return width > height


def select_photos(
    data: list[str] | None, gin_files: list[str], gin_params: list[str], split: str, limit: int | None
) -> tuple[list[Pair], str]:
    """Every pair under the --data roots, or the recipe's split regenerated (roots, fractions and seed
    come from the recipe, so it is the split its run used)."""
    if data:
        pairs, what = pairs_under(data), f"every pair under {', '.join(data)}"
    else:
        pairs, what = recipe_splits(gin_files, gin_params)[split], f"the {split} split of {', '.join(gin_files)}"
    if limit:
        pairs, what = first_per_root(pairs, limit), f"{what}, first {limit} per root"
    if not pairs:
        raise UserError(f"no photos to score ({what})")
    return pairs, what


def load_peers(peers: dict[str, str], threads: int) -> list[tuple[str, object]]:
    """(label, peer) for each peer file given that can run here; a note for each that cannot.

    peers: {"mediapipe": general .tflite (its landscape model beside it), "meet": .tflite,
    "pphumanseg": .onnx}. MediaPipe is listed twice: the general model alone, and with its landscape
    model for landscape frames (what MediaPipe's landscape option gives a webcam)."""
    makers = {
        "mediapipe": lambda p: [
            ("MediaPipe selfie", MediaPipeSelfie(p, threads, landscape=False)),
            ("MediaPipe landscape", MediaPipeSelfie(p, threads, landscape=True)),
        ],
        "meet": lambda p: [("Google Meet", MeetSegmentation(p, threads))],
        "pphumanseg": lambda p: [("PP-HumanSeg", PPHumanSeg(p, threads))],
    }
    found = []
    for key, path in peers.items():
        try:
            found += makers[key](path)
        except UserError as error:
            print(f"note: {error}; left out of the comparison")
    return found


def load_models(ckpts: list[str], peers: dict[str, str], threads: int) -> list[tuple[str, object]]:
    """(label, segmenter) for our model files, then every peer that can run here."""
    ours = [load_segmenter(c, threads=threads) for c in ckpts]
    names = [s.name for s in ours]
    models = [(s.name if names.count(s.name) == 1 else f"{c} ({s.name})", s) for c, s in zip(ckpts, ours, strict=True)]
    models += load_peers(peers, threads)
    if not models:
        raise UserError("nothing to compare: give --ckpt, or make a peer runnable (pip install ai-edge-litert)")
    return models


def frame_ms(segmenter, frame: np.ndarray, runs: int = 30, warmup: int = 3) -> float:
    """Median wall time of segmenter(frame) in ms: model plus pre- and post-processing, as a user calls it."""
    for _ in range(warmup):
        segmenter(frame)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        segmenter(frame)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def format_table(results: dict[str, dict], roots: list[str]) -> str:
    """Markdown: one row per data root (and clip, for video frames) and model, the models of one
    root together; then the share of pixels called person on people-free frames, where measured."""
    lines = ["| data | model | n | IoU | mean IoU | boundary F |", "|---|---|--:|--:|--:|--:|"]
    first = next(iter(results.values()))
    groups = [(Path(r).name, "by_root", r) for r in roots]
    groups += [(clip, "by_clip", clip) for clip in first.get("by_clip", {})]
    for name, table, key in groups:
        for label, result in results.items():
            m = result[table][key]
            lines.append(
                f"| {name} | {label} | {m['n']} | {m['iou']:.4f} | {m['mean_iou']:.4f} | {m['boundary_f']:.4f} |"
            )
    if "false_person" in first:
        lines += ["", "| people-free frames | model | n | pixels called person % | worst frame % |"]
        lines += ["|---|---|--:|--:|--:|"]
        for label, result in results.items():
            fp = result["false_person"]
            lines.append(f"| empty scenes | {label} | {fp['n']} | {100 * fp['share']:.2f} | {100 * fp['worst']:.1f} |")
    return "\n".join(lines)


def _title(tile: np.ndarray, lines: list[str]) -> None:
    """White text on a dark band at the tile's top, cut to fit its width."""
    tile[: 6 + 14 * len(lines)] //= 3
    for i, line in enumerate(lines):
        while len(line) > 1 and cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] > tile.shape[1] - 8:
            line = line[:-1]
        cv2.putText(tile, line, (4, 15 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)


def save_picture(path: Path, models: list[tuple[str, object]], pairs: list[Pair], rows: int = 4) -> None:
    """About `rows` rows, spread over the data roots and each root: photo, then each model's mask overlay
    and blurred background (lib.live.compose.Compositor, as the webcam shows them), tiles turned to the
    photos' orientation. In the format of the name's suffix (.jpg: quality 80, .png, .webp, ...)."""
    mask, blur = Compositor("mask"), Compositor("blur")
    roots = len({p.root for p in pairs})
    chosen = spread_per_root(pairs, max(1, rows // roots))
    landscape = _is_landscape(chosen[0])
    tile_hw = (150, 266) if landscape else (200, 150)
    grid = []
    for i, pair in enumerate(chosen):
        image, _ = RawPairs(chosen).load(i)
        tiles = [(image, [Path(pair.root).name, Path(pair.image).stem])]
        for label, segmenter in models:
            prob = segmenter(image)
            short = label.split(" (")[0]
            tiles += [(mask(image, prob), [short, "mask"]), (blur(image, prob), [short, "blurred background"])]
        row = [letterbox(tile, tile_hw)[0] for tile, _ in tiles]
        for j, (_, title) in enumerate(tiles):
            if i == 0 or j == 0:  # column titles on the first row; every photo says where it is from
                _title(row[j], title)
        grid.append(np.hstack(row))
    write_image(path, np.vstack(grid), [cv2.IMWRITE_JPEG_QUALITY, 80], flag="--picture")


def compare(
    ckpts: list[str],
    peers: dict[str, str],
    data: list[str] | None,
    gin_files: list[str],
    gin_params: list[str],
    split: str = "test",
    threads: int = 2,
    limit: int | None = None,
    json_out: str | None = None,
    picture: str | None = None,
    runs: int = 30,
    empty: list[Path] = (),
) -> dict:
    """Score every model on the same photos, time it on a 640x480 frame, print one markdown table.

    empty: people-free frames, on which the share of pixels called person is measured too."""
    if runs < 1:
        raise UserError(f"--runs {runs}: expected a positive number")
    if picture:  # a suffix OpenCV cannot encode is refused before the models run, not after
        check_picture_name(picture, "--picture")
    pairs, what = select_photos(data, gin_files, gin_params, split, limit)
    models = load_models(ckpts, peers, threads)
    # a webcam-like frame from a real photo: scaled to cover 640x480, centre crop
    frame = fit_background(RawPairs(pairs).load(0)[0], (480, 640))
    results = {}
    for label, segmenter in models:
        results[label] = score(segmenter, pairs, batch_size=8, num_workers=1, progress=True)
        results[label]["ms_per_640x480"] = frame_ms(segmenter, frame, runs)
        if empty:
            results[label]["false_person"] = false_person(segmenter, list(empty))
    counts = Counter(p.root for p in pairs)  # roots in the recipe's (or --data's) order
    print(f"\nphotos: {what} ({', '.join(f'{Path(r).name} {n}' for r, n in counts.items())})")
    print(f"people-free frames: {len(empty)}\n" if empty else "")
    print(format_table(results, list(counts)) + "\n")
    for label, segmenter in models:
        how = "; landscape model" if getattr(segmenter, "landscape", None) is not None else ""
        print(
            f"- {label}: {results[label]['ms_per_640x480']:.1f} ms per 640x480 frame "
            f"(CPU, {threads} threads, median of {runs} runs after 3 warm-up{how})"
        )
    if json_out:
        out = Path(json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for result in results.values():
            result.pop("per_image", None)
        out.write_text(json.dumps({"photos": what, "threads": threads, "models": results}, indent=2))
        print(f"numbers: {out}")
    if picture:
        save_picture(Path(picture), models, pairs)
        print(f"picture: {picture} ({Path(picture).stat().st_size / 1024:.0f} KB)")
    return results
