"""Score a model (.pt checkpoint, TorchScript .ts or ONNX) on its run's test split or any data.

python evaluate.py --ckpt experiments/exp1/weights/best.pt
python evaluate.py --ckpt models/lite.onnx --data ../shared/data/ccp --json out/ccp.json
"""

import argparse
import os

from lib.live.errors import cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib.tools.evaluate import SPLIT_CHOICES, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="model file: .pt, .ts or .onnx (or an smp export folder)")
    parser.add_argument("--data", action="append", help="data root to score (repeatable); default: the run's split")
    parser.add_argument(
        "--split", choices=SPLIT_CHOICES, help="which split of the run (default test; 'all' with --data)"
    )
    parser.add_argument("--json", help="write the metrics here; pictures of the worst photos go beside it")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally flipped photo")
    parser.add_argument("--refine", action="store_true", help="scale masks up along the photo's edges (guided filter)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--backend", choices=("torch", "torchscript", "onnx"), help="default: the file's own")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="image-decoding processes")
    parser.add_argument(
        "--input-size",
        help="run the network at this input box instead of the file's, HEIGHTxWIDTH, e.g. 384x288 "
        "(every picture, turned to its orientation; with --landscape-size, pictures taller than wide only)",
    )
    parser.add_argument(
        "--landscape-size", help="the input box for photos wider than tall only, HEIGHTxWIDTH, e.g. 288x384"
    )
    args = parser.parse_args()
    evaluate(
        args.ckpt,
        data=args.data,
        split=args.split,
        json_out=args.json,
        tta=args.tta,
        batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        num_workers=args.workers,
        refine=args.refine,
        input_size=args.input_size,
        landscape_size=args.landscape_size,
    )


if __name__ == "__main__":
    run_cli(main)
