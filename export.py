"""Export a checkpoint to TorchScript, ONNX and smp's format, each verified against eager.

python export.py --ckpt experiments/exp1/weights/best.pt --formats torchscript,onnx,smp
"""

import argparse
from pathlib import Path

from lib.errors import UserError, run_cli
from lib.export import FORMATS, export_all
from lib.model import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a .pt checkpoint written by train.py")
    parser.add_argument("--formats", default="torchscript,onnx", help=f"comma-separated, of {','.join(FORMATS)}")
    parser.add_argument("--out", help="output folder (default: beside the checkpoint)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter (opset >= 18)")
    args = parser.parse_args()
    ckpt = Path(args.ckpt)
    if ckpt.suffix not in (".pt", ".pth"):
        raise UserError(f"--ckpt {ckpt}: expected a .pt checkpoint written by train.py (exports are made from it)")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    model, info = load_checkpoint(ckpt)
    out = Path(args.out) if args.out else ckpt.parent
    for fmt, result in export_all(model, info, out, ckpt.stem, formats, args.opset, args.dynamo).items():
        print(
            f"{fmt:<12} {result['path']}  max |diff| vs eager {result['max_abs_diff']:.2e} at sizes {result['sizes']}"
        )


if __name__ == "__main__":
    run_cli(main)
