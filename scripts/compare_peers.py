"""Score our models and MediaPipe's selfie segmenter (the peer to beat) on the same photos, per data root.

    python -m scripts.compare_peers --ckpt experiments/exp3/weights/best.onnx --json out/peers.json --picture peers.jpg
    python -m scripts.compare_peers --ckpt best.onnx --data ../shared/data/ccp --limit 20 --no-mediapipe

Photos: the test split of the recipe (--gin, default gin/lite.gin), regenerated from its roots,
fractions and seed, so exactly the split its run was tested on; or every pair under --data roots.
Prints one markdown table (data root x model: n, IoU, mean IoU, boundary F) and the CPU time per
640x480 frame of each model. MediaPipe runs through the optional ai-edge-litert
(pip install ai-edge-litert); without it, or without the .tflite file, our models are scored alone.
"""

import argparse
import shlex
import sys

import lib.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib.compare import compare
from lib.errors import run_cli
from lib.pairs import SPLIT_NAMES

MEDIAPIPE = "../shared/peers/mediapipe_selfie/selfie_segmentation.tflite"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", default=[], help="our model: .onnx, .pt or .ts (repeatable)")
    parser.add_argument("--gin", action="append", help="recipe whose split to score (default gin/lite.gin)")
    parser.add_argument("--gin-param", action="append", default=[], help="override a recipe binding")
    parser.add_argument("--split", choices=SPLIT_NAMES, default="test")
    parser.add_argument("--data", action="append", help="score every pair under this root instead (repeatable)")
    parser.add_argument("--mediapipe", default=MEDIAPIPE, help="general model; the landscape one beside it too")
    parser.add_argument("--no-mediapipe", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every model")
    parser.add_argument("--limit", type=int, help="only the first N photos of each data root")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model on a 640x480 frame")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--picture", help="write the side-by-side picture here (.jpg)")
    args = parser.parse_args(argv)
    print("$ python -m scripts.compare_peers " + shlex.join(sys.argv[1:] if argv is None else argv))
    compare(
        args.ckpt,
        None if args.no_mediapipe else args.mediapipe,
        args.data,
        args.gin or ["gin/lite.gin"],
        args.gin_param,
        split=args.split,
        threads=args.threads,
        limit=args.limit,
        json_out=args.json,
        picture=args.picture,
        runs=args.runs,
    )


if __name__ == "__main__":
    run_cli(main)
