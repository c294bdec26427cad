"""Turn photos with person boxes into a training root (images/ + masks/ + ignore/), labelled by our networks.

    python -m scripts.label_boxes --images ../shared/data/coco_val_groups/images \\
        --boxes ../shared/data/coco_val_groups/boxes --ckpt models/lite.pt --out data/coco_groups_labelled
    python -m scripts.label_boxes --images ../shared/data/coco_val_people/images \\
        --boxes ../shared/data/coco_val_people/boxes --ckpt models/lite.pt \\
        --score-against ../shared/data/coco_val_people/masks --picture out/labels.jpg     # measure the labeller

Boxes: --boxes DIR (<name>.txt, one `x0 y0 x1 y1` a line, pixels), --yolo DIR (<name>.txt,
`class cx cy w h` normalised; --person-class), or --coco FILE (an instances json; iscrowd boxes are
unknown). Several --ckpt are averaged. lib/tools/label_boxes.py says how each pixel is decided.
--score-against MASKS scores the labels against hand masks (ignore/ beside MASKS is left out too)
and writes no root unless --out is given. Nothing existing is overwritten: --out is written under a
temporary name and renamed when complete.
"""

import argparse
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

import lib.training.inference  # noqa: F401  (fills the loader table: .pt and .ts model files too)
from lib.live.errors import UserError, run_cli, shown
from lib.live.files import check_output_file, check_picture_name, write_image
from lib.live.preprocess import IMAGE_SUFFIXES, read_image, to_rgb
from lib.live.segmenter import load_segmenter
from lib.tools.label_boxes import (
    Agreement,
    LabelSettings,
    label_photo,
    read_coco_boxes,
    read_txt_boxes,
    read_yolo_boxes,
    segmenters_predict,
    summary,
)
from lib.training.pictures import mosaic, save_picture


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of photos")
    boxes = parser.add_mutually_exclusive_group(required=True)
    boxes.add_argument("--boxes", help="folder of <name>.txt, `x0 y0 x1 y1` pixels a line")
    boxes.add_argument("--yolo", help="folder of YOLO <name>.txt, `class cx cy w h` normalised")
    boxes.add_argument("--coco", help="a COCO instances .json")
    parser.add_argument("--person-class", type=int, default=0, help="the YOLO class id of a person (default 0)")
    parser.add_argument("--ckpt", action="append", help="a model file of this project (several: averaged)")
    parser.add_argument("--out", help="the root to write (images/ masks/ ignore/); must not exist")
    parser.add_argument("--score-against", help="hand masks to score the labels against (<name>.png)")
    parser.add_argument("--picture", help="a picture of labels to look at (.jpg/.png)")
    parser.add_argument("--limit", type=int, help="only the first N photos (sorted by name)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime / torch threads")
    defaults = LabelSettings()
    for name in ("margin", "slack", "low", "high", "outside_prob"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    parser.add_argument("--min-box-px", type=int, default=defaults.min_box_px)
    parser.add_argument("--no-flip", action="store_true", help="do not average with the mirrored crop")
    args = parser.parse_args()
    if not args.out and not args.score_against:
        parser.error("give --out (write a root) or --score-against (measure), or both")
    return args


def photos_in(folder: Path, limit: int | None) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"--images {folder}: not a folder")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise UserError(f"--images {folder}: no photos ({', '.join(IMAGE_SUFFIXES)})")
    return photos[:limit] if limit else photos


def box_reader(args):
    """name, width, height -> Boxes, or None where the photo has no box file (it is skipped)."""
    if args.coco:
        coco = read_coco_boxes(Path(args.coco))
        return lambda name, w, h: coco.get(name)
    folder, flag = (Path(args.boxes), "--boxes") if args.boxes else (Path(args.yolo), "--yolo")
    if not folder.is_dir():
        raise UserError(f"{flag} {folder}: not a folder")

    def read(name, w, h):
        path = folder / f"{name}.txt"
        if not path.is_file():
            return None
        return read_txt_boxes(path, w, h) if args.boxes else read_yolo_boxes(path, w, h, args.person_class)

    return read


def overlay(photo_bgr, mask, unknown, boxes) -> np.ndarray:
    """RGB: person tinted green, unknown tinted magenta, boxes yellow (crowds orange)."""
    rgb = to_rgb(photo_bgr).astype(np.float32)
    rgb[mask > 0] = rgb[mask > 0] * 0.45 + np.float32((40, 220, 60)) * 0.55
    rgb[unknown] = rgb[unknown] * 0.45 + np.float32((220, 40, 220)) * 0.55
    out = rgb.astype(np.uint8)
    for colour, group in (((255, 230, 0), boxes.people), ((255, 140, 0), boxes.crowds)):
        for x0, y0, x1, y1 in group:
            cv2.rectangle(out, (round(x0), round(y0)), (round(x1), round(y1)), colour, 1)
    return out


def main() -> None:
    args = parse_args()
    settings = LabelSettings(args.margin, args.slack, args.low, args.high, args.outside_prob, args.min_box_px,
                             not args.no_flip)  # fmt: skip
    settings.check()
    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise UserError(f"--out {out} exists already: choose another name (nothing is overwritten)")
    hand = Path(args.score_against) if args.score_against else None
    if hand is not None and not hand.is_dir():
        raise UserError(f"--score-against {hand}: not a folder of masks")
    if args.picture:  # its format is its suffix's: refused now, not after labelling every photo
        check_output_file(check_picture_name(args.picture, "--picture"), "--picture")
    photos = photos_in(Path(args.images), args.limit)
    read_boxes = box_reader(args)
    ckpts = args.ckpt or ["models/lite.onnx"]
    segmenters = [load_segmenter(c, threads=args.threads) for c in ckpts]
    predict = segmenters_predict(segmenters, settings.flip)
    aspect = segmenters[0].prep.input_size

    tmp = out.with_name(f".{out.name}.partial") if out else None
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in ("images", "masks", "ignore"):
            (tmp / sub).mkdir(parents=True)
    agreement, picked, skipped, started = Agreement(), [], [], time.time()
    unknown_px = all_px = 0  # over every photo labelled, for the closing line
    try:
        for i, path in enumerate(photos, 1):
            photo = read_image(path, cv2.IMREAD_COLOR)
            if photo is None:
                skipped.append(f"{shown(path.name)}: unreadable")
                continue
            boxes = read_boxes(path.stem, photo.shape[1], photo.shape[0])
            if boxes is None:
                skipped.append(f"{shown(path.name)}: no box file")
                continue
            mask, unknown, _ = label_photo(photo, boxes, predict, aspect, settings)
            unknown_px, all_px = unknown_px + int(np.count_nonzero(unknown)), all_px + unknown.size
            if tmp is not None:
                _link_or_copy(path, tmp / "images" / path.name)
                write_image(tmp / "masks" / f"{path.stem}.png", mask)
                if unknown.any():
                    write_image(tmp / "ignore" / f"{path.stem}.png", unknown.astype(np.uint8) * 255)
            if hand is not None:
                truth = read_image(hand / f"{path.stem}.png", cv2.IMREAD_GRAYSCALE)
                if truth is None:
                    skipped.append(f"{shown(path.name)}: no hand mask in {shown(hand)}")
                else:
                    ignore = read_image(hand.parent / "ignore" / f"{path.stem}.png", cv2.IMREAD_GRAYSCALE)
                    agreement.add(mask, unknown, truth, None if ignore is None else ignore > 127)
            if args.picture and len(picked) < 12 and len(boxes.people) >= 2 and i % 3 == 0:
                picked.append((path.name, overlay(photo, mask, unknown, boxes)))
            if i % 100 == 0 or i == len(photos):
                rate = i / (time.time() - started)
                print(f"{i}/{len(photos)} photos, {rate:.1f}/s", flush=True)
        if tmp is not None:
            os.replace(tmp, out)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if skipped:
        print(f"{len(skipped)} photos skipped (e.g. {'; '.join(skipped[:3])})")
    print(summary(len(photos) - len(skipped), ckpts, out, unknown_px, all_px))
    if hand is not None:
        print(agreement.report())
    if args.picture and picked:
        save_picture(Path(args.picture), mosaic([tile for _, tile in picked], row_height=300), flag="--picture")
        print(f"picture: {args.picture} (green person, magenta unknown, yellow boxes)")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


if __name__ == "__main__":
    run_cli(main)
