"""Make the tiny real sample committed under samples/ (run once; the output is in git).

16 portraits from PFCN in the AISegment layout and 8 full-body photos from CCP in the folder
layout, every k-th file in name order, downscaled by 2 and re-encoded, so a fresh clone can run
gin/smoke.gin and the tests on real pixels.

    python -m scripts.make_sample --pfcn ../shared/data/pfcn_aisegment --ccp ../shared/data/ccp
"""

import argparse
import shutil
from pathlib import Path

import cv2

from lib.live.files import write_image
from lib.live.preprocess import read_image
from lib.training.pairs import scan_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pfcn", default="../shared/data/pfcn_aisegment")
    parser.add_argument("--ccp", default="../shared/data/ccp")
    parser.add_argument("--out", default="samples")
    parser.add_argument("--portraits", type=int, default=16)
    parser.add_argument("--fullbody", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.out)
    for name, root, count in (("portraits", args.pfcn, args.portraits), ("fullbody", args.ccp, args.fullbody)):
        pairs = scan_root(root).pairs
        chosen = pairs[:: len(pairs) // count][:count]
        dest = out / name
        if dest.exists():
            shutil.rmtree(dest)
        for pair in chosen:
            image = read_image(pair.image_path, cv2.IMREAD_COLOR)
            mask = read_image(pair.mask_path, cv2.IMREAD_UNCHANGED)
            size = (image.shape[1] // 2, image.shape[0] // 2)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            (dest / pair.image).parent.mkdir(parents=True, exist_ok=True)
            (dest / pair.mask).parent.mkdir(parents=True, exist_ok=True)
            image_path = (dest / pair.image).with_suffix(".jpg")
            write_image(image_path, image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            write_image(dest / pair.mask, mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{dest}: {len(chosen)} pairs from {root}")


if __name__ == "__main__":
    main()
