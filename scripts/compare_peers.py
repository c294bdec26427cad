"""Score our models and the peers to beat (MediaPipe selfie and landscape, Google Meet, PP-HumanSeg)
on the same photos, per data root (and per clip for video frames).

    python -m scripts.compare_peers --ckpt experiments/exp3/weights/best.onnx --json out/peers.json --picture peers.jpg
    python -m scripts.compare_peers --ckpt models/lite_int8.onnx --data ../shared/data/davis_people \\
        --empty ../shared/backgrounds/davis2016
    python -m scripts.compare_peers --ckpt best.onnx --data ../shared/data/ccp --limit 20 --no-peers

Photos: the test split of the recipe (--gin, default gin/lite.gin), regenerated from its roots,
fractions and seed, so exactly the split its run was tested on; or every pair under --data roots.
--empty: people-free frames (the held-out sequences of plate_split, as training holds them out),
on which the share of pixels called person is measured. Prints markdown tables and the CPU time per
640x480 frame of each model. The tflite peers run through the optional ai-edge-litert
(pip install ai-edge-litert); a peer that cannot run is left out with a note.
"""

import argparse
import shlex
import sys

from lib.live.errors import UserError, cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib.tools.compare import compare
from lib.tools.peers import PEER_FILES as PEERS
from lib.training.copy_paste import plate_split
from lib.training.splits import SPLIT_NAMES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", default=[], help="our model: .onnx, .pt or .ts (repeatable)")
    parser.add_argument("--gin", action="append", help="recipe whose split to score (default gin/lite.gin)")
    parser.add_argument("--gin-param", action="append", default=[], help="override a recipe binding")
    parser.add_argument("--split", choices=SPLIT_NAMES, default="test")
    parser.add_argument("--data", action="append", help="score every pair under this root instead (repeatable)")
    parser.add_argument("--mediapipe", default=PEERS["mediapipe"], help="general model; the landscape one beside it")
    parser.add_argument("--meet", default=PEERS["meet"], help="Google Meet's segm_full_v679.tflite")
    parser.add_argument("--pphumanseg", default=PEERS["pphumanseg"], help="PP-HumanSeg's .onnx")
    parser.add_argument("--no-peers", "--no-mediapipe", action="store_true", help="our models alone")
    parser.add_argument("--empty", action="append", default=[], help="folder of people-free frames (repeatable)")
    parser.add_argument(
        "--empty-holdout", type=int, default=4, help="use the sequences plate_split holds out of training (0: all)"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every model")
    parser.add_argument("--limit", type=int, help="only the first N photos of each data root")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model on a 640x480 frame")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--picture", help="write the side-by-side picture here (.jpg)")
    args = parser.parse_args(argv)
    print("$ python -m scripts.compare_peers " + shlex.join(sys.argv[1:] if argv is None else argv))
    if args.empty_holdout < 0:
        raise UserError(f"--empty-holdout {args.empty_holdout}: expected 0 (every frame) or more")
    train_plates, held_out = plate_split(args.empty, args.empty_holdout)
    peers = {} if args.no_peers else {"mediapipe": args.mediapipe, "meet": args.meet, "pphumanseg": args.pphumanseg}
    compare(
        args.ckpt,
        peers,
        args.data,
        args.gin or ["gin/lite.gin"],
        args.gin_param,
        split=args.split,
        threads=args.threads,
        limit=args.limit,
        json_out=args.json,
        picture=args.picture,
        runs=args.runs,
        empty=held_out if args.empty_holdout else train_plates,
    )


if __name__ == "__main__":
    run_cli(main)
