"""Export a checkpoint to TorchScript, ONNX, smp's format, fp16 or int8 ONNX, each verified.

python export.py --ckpt experiments/exp1/weights/best.pt --formats torchscript,onnx,smp
python export.py --ckpt models/lite.pt --formats int8 --calibration-data ../shared/data/pfcn_aisegment --out models

TorchScript, ONNX and smp are checked against eager within 1e-4 on random inputs, fp16 within 2 % of
the largest logit, int8 by the IoU of its masks with the fp32 model's on photos other than its
calibration's.
"""

import argparse
from pathlib import Path

from lib.live.errors import UserError, cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib.live.checks import check_number
from lib.live.files import check_writable
from lib.training.export import FORMATS, SUFFIXES, export_all, matches, webcam_like_frames
from lib.training.model import load_checkpoint
from lib.training.provenance import calibration_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a .pt checkpoint written by train.py")
    parser.add_argument("--formats", default="torchscript,onnx", help=f"comma-separated, of {','.join(FORMATS)}")
    parser.add_argument("--out", help="output folder (default: beside the checkpoint)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter (opset >= 18)")
    parser.add_argument("--calibration-data", action="append", help="int8: data root(s) (default: the run's splits)")
    parser.add_argument("--calibration-photos", type=int, default=64, help="int8: photos to calibrate on (64)")
    parser.add_argument("--overwrite", action="store_true", help="replace exports that exist already")
    args = parser.parse_args()
    ckpt = Path(args.ckpt)
    if ckpt.suffix not in (".pt", ".pth"):
        raise UserError(f"--ckpt {ckpt}: expected a .pt checkpoint written by train.py (exports are made from it)")
    check_number("--calibration-photos", args.calibration_photos, integer=True, low=2, high=10_000)
    check_number("--opset", args.opset, integer=True, low=13, high=23)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        wanted = f"expected some of {','.join(FORMATS)}"
        raise UserError(f"--formats {args.formats}: unknown {', '.join(unknown) or 'none given'}; {wanted}")
    # a folder that cannot be written is named before any work
    out = Path(args.out) if args.out else ckpt.parent
    check_writable(out, "--out")
    model, info = load_checkpoint(ckpt)
    formats = keep_matching_exports(model.float().eval().cpu(), info, ckpt, out, formats, args.overwrite)
    if not formats:
        return
    calibration = check = None
    if "int8" in formats:
        calibrate_on, check_on, source = calibration_pairs(ckpt, info, args.calibration_data)
        calibration = webcam_like_frames(calibrate_on, args.calibration_photos)
        check = webcam_like_frames(check_on, args.calibration_photos // 2)
        print(f"int8: calibrating on {len(calibration)} and checking on {len(check)} photos from {source}")
    results = export_all(model, info, out, ckpt.stem, formats, args.opset, args.dynamo, calibration, check)
    for fmt, result in results.items():
        if fmt == "int8":
            print(f"{fmt:<12} {result['path']}  masks agree with fp32 by IoU {result['mask_agreement']:.4f} "
                  f"on {result['frames']} photos")  # fmt: skip
        else:
            print(f"{fmt:<12} {result['path']}  max |diff| vs eager {result['max_abs_diff']:.2e} "
                  f"at sizes {result['sizes']}")  # fmt: skip


def keep_matching_exports(model, info, ckpt: Path, out: Path, formats: list[str], overwrite: bool) -> list[str]:
    """The formats still to write. Nothing the user has is replaced unasked: an export already there
    that is this checkpoint's (same network and input, output within the tolerance: a run folder's
    best.ts and best.onnx, written by train.py) is kept with a note; any other file there stops
    the command in one line, unless --overwrite."""
    if overwrite:
        return formats
    todo, others = [], []
    for fmt in formats:
        path = out / f"{ckpt.stem}{SUFFIXES[fmt]}"
        if not path.exists():
            todo.append(fmt)
            continue
        diff, why = matches(model, info, path, fmt)
        if diff is not None:
            print(f"{fmt:<12} {path}  exists and matches {ckpt.name} (max |diff| {diff:.2e}): kept")
        elif fmt == "int8":
            others.append(f"{path}: exists already ({why})")
        else:
            others.append(f"{path}: exists already and is not an export of {ckpt.name} ({why})")
    if others:
        raise UserError(f"{'; '.join(others)}; pass --overwrite to replace it, or --out another folder")
    return todo


if __name__ == "__main__":
    run_cli(main)
