"""Ship a run's best weights under models/: fp16 .pt (fine-tuning, init_from), fp32 ONNX, int8 ONNX.

    python -m scripts.ship_model --ckpt experiments/exp1/weights/best.pt --recipe gin/lite_cpu.gin --name lite

The files say which recipe made them, and its data roots, split and seed, instead of the run folder
(a clone has no experiments/): evaluate.py then scores a shipped model on its recipe's test split,
made again from those roots, fractions and seed. int8 is calibrated on the run's train split and
checked on its val split.
Each file is checked like export.py checks it; nothing in models/ is overwritten unless --replace.
"""

import argparse
import tempfile
from pathlib import Path

from lib.live.errors import UserError, cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib import ROOT
from lib.live.model_info import ModelInfo
from lib.live.preprocess import with_boxes
from lib.training.data import recipe_of_files
from lib.training.export import export_all, webcam_like_frames
from lib.training.model import load_checkpoint
from lib.training.provenance import run_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="the run's weights/best.pt")
    parser.add_argument("--recipe", required=True, help="the gin file the run was launched with, e.g. gin/lite_cpu.gin")
    parser.add_argument("--name", default="lite", help="models/<name>.pt, <name>.onnx, <name>_int8.onnx")
    parser.add_argument("--out", default=str(ROOT / "models"))
    parser.add_argument("--replace", action="store_true", help="overwrite the shipped files (a better model)")
    parser.add_argument(
        "--input-size",
        help="the input box the files describe, HEIGHTxWIDTH (default: the training's); "
        "measure it first with evaluate.py --input-size",
    )
    parser.add_argument(
        "--landscape-size",
        help="the input box for pictures wider than tall, HEIGHTxWIDTH (default: the portrait box turned); "
        "measure it first with evaluate.py --landscape-size",
    )
    args = parser.parse_args()
    if not (ROOT / args.recipe).is_file():
        raise UserError(f"--recipe {args.recipe}: no such file in {ROOT}")
    out = Path(args.out)
    targets = [out / f"{args.name}{suffix}" for suffix in (".pt", ".onnx", "_int8.onnx")]
    if any(t.exists() for t in targets) and not args.replace:
        raise UserError(f"--out {out}: {args.name}.* exist already; pass --replace to ship a better model over them")
    model, info = load_checkpoint(args.ckpt)
    run_dir, splits = run_splits(Path(args.ckpt), info)
    if run_dir is None:
        raise UserError(f"--ckpt {args.ckpt}: its run folder (for the calibration photos) is not found")
    meta = {k: v for k, v in info.meta.items() if k != "run_dir"} | {"recipe": args.recipe, "run": run_dir.name}
    # the data it trained on as plain values (runs record it; older ones take the recipe's)
    meta.setdefault("data", recipe_of_files([str(ROOT / args.recipe)]).to_dict())
    prep = info.prep
    if args.input_size or args.landscape_size:
        meta["trained_at"] = list(prep.input_size)  # the files run at another box than the batches had
        prep = with_boxes(prep, args.input_size, args.landscape_size)
    shipped = ModelInfo(info.spec, prep, meta)
    calibration, check = webcam_like_frames(splits["train"], 64), webcam_like_frames(splits["val"], 32)
    out.mkdir(parents=True, exist_ok=True)
    # all three files or none: made and checked in a staging folder beside them, moved in at the end,
    # so a failed check (int8 masks too far from fp32's) leaves the shipped set as it was
    with tempfile.TemporaryDirectory(prefix=f".{args.name}-", dir=out) as staging:
        try:
            results = export_all(model, shipped, Path(staging), args.name, ["onnx", "half", "int8"],
                                 calibration=calibration, check_frames=check)  # fmt: skip
        except RuntimeError as error:
            raise UserError(f"nothing in {out} was replaced: {error}") from None
        made = [Path(results[fmt]["path"]) for fmt in ("half", "onnx", "int8")]
        for source, target in zip(made, targets, strict=True):
            source.replace(target)  # the fp16 checkpoint is the shipped .pt
    for fmt, result in results.items():
        check_text = (f"masks agree with fp32 by IoU {result['mask_agreement']:.4f}" if fmt == "int8"
                      else f"max |diff| vs eager {result['max_abs_diff']:.1e}")  # fmt: skip
        print(f"{fmt:<5} {out / Path(result['path']).name.replace('_fp16.pt', '.pt')}  {check_text}")
    for target in targets:
        print(f"{target}: {target.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    run_cli(main)
