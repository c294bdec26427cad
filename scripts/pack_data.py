"""A compact copy of data folders for the GPU machine (at most 64 MiB travels there).

Each root keeps its layout and file names, so splits made from the copy hold exactly the photos
that splits of the originals hold (make_splits orders pairs by path and shuffles with its seed).
Photos are scaled so the long side is --long-side and re-encoded as JPEG; masks become 1-bit
PNGs. The encoder weights given with --weights are copied beside them.

    python -m scripts.pack_data ../shared/data/pfcn_aisegment ../shared/data/ccp --out .pack
"""

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from lib.live.errors import UserError, run_cli
from lib.live.files import write_image
from lib.training.masks import read_mask
from lib.training.pairs import read_photo, scan_root


def pack_root(root: Path, out: Path, long_side: int, quality: int) -> int:
    scan = scan_root(root)
    if scan.report():
        print(scan.report())
    for pair in tqdm(scan.pairs, desc=root.name, unit="pair"):
        image = read_photo(pair.image_path)
        mask = read_mask(pair.mask_path, pair.layout)
        scale = long_side / max(image.shape[:2])
        if scale < 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5).astype(np.uint8)
        image_out, mask_out = out / pair.image, out / pair.mask
        image_out.parent.mkdir(parents=True, exist_ok=True)
        mask_out.parent.mkdir(parents=True, exist_ok=True)
        write_image(image_out, image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if pair.layout == "aisegment":  # the layout's contract: the person is the alpha channel
            rgba = np.zeros((*mask.shape, 4), np.uint8)
            rgba[:, :, 3] = mask * 255
            Image.fromarray(rgba, "RGBA").save(mask_out, optimize=True)
        else:
            Image.fromarray(mask.astype(bool)).save(mask_out, optimize=True)  # 1-bit PNG
    return len(scan.pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="data roots (AISegment or folder layout)")
    parser.add_argument("--out", default=".pack", help="output folder (git-ignored)")
    parser.add_argument("--long-side", type=int, default=384, help="the training size: 384x288 portraits")
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--weights", default="../shared/weights/mobilenet_v2_imagenet_encoder.pt")
    args = parser.parse_args()
    out = Path(args.out)
    for root in map(Path, args.roots):
        dest = out / root.name
        if dest.exists():
            raise UserError(f"--out {out}: {dest} exists already; remove it first (nothing is overwritten)")
        print(f"{root} -> {dest}: {pack_root(root, dest, args.long_side, args.quality)} pairs")
    if args.weights:
        shutil.copy(args.weights, out / Path(args.weights).name)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    run_cli(main)
