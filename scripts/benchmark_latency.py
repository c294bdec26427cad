"""CPU latency of a model through each format: eager PyTorch, TorchScript, ONNX Runtime.

Two measurements per format, median of --runs after --warmup:
- model: one tensor at the model's input size (the network alone);
- frame: one 640x480 BGR frame through load_segmenter's Segmenter (letterbox, normalise, model, resize back).

    python -m scripts.benchmark_latency --ckpt experiments/exp1/weights/best.pt
    python -m scripts.benchmark_latency --arch UnetPlusPlus --encoder resnet18 --input-size 384 288

Without --ckpt an untrained model of the given architecture is timed (speed does not depend
on the weights), and the output says so.
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lib.live.errors import run_cli
from lib.live.model_info import ModelInfo, ModelSpec
from lib.live.preprocess import Preprocess
from lib.live.segmenter import load_segmenter
from lib.training import inference  # noqa: F401  (fills the loader table: .pt and .ts files too)
from lib.training.export import export_onnx, export_torchscript
from lib.training.model import count_parameters, create, load_checkpoint, save_checkpoint


def median_ms(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a .pt checkpoint; else an untrained --arch/--encoder")
    parser.add_argument("--arch", default="UnetPlusPlus")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--decoder-channels", type=int, nargs=5, help="smp decoder_channels")
    parser.add_argument("--input-size", type=int, nargs=2, default=(384, 288), metavar=("H", "W"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for torch and ORT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    if args.ckpt:
        model, info = load_checkpoint(args.ckpt)
        what = args.ckpt
    else:
        kwargs = {"decoder_channels": args.decoder_channels} if args.decoder_channels else {}
        model = create(args.arch, args.encoder, kwargs).eval()
        info = ModelInfo(ModelSpec(args.arch, args.encoder, kwargs), Preprocess(input_size=tuple(args.input_size)))
        what = f"untrained {args.arch}/{args.encoder}"
    prep = info.prep
    tmp = Path(tempfile.mkdtemp(prefix="latency-"))
    files = {
        "torch": args.ckpt,
        "torchscript": export_torchscript(model, info, tmp / "m.ts"),
        "onnx": export_onnx(model, info, tmp / "m.onnx"),
    }
    if not args.ckpt:
        files["torch"] = tmp / "m.pt"
        save_checkpoint(files["torch"], model, info)
    h, w = prep.box_for(480, 640)
    x = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
    frame = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    print(
        f"{what}: {count_parameters(model) / 1e6:.2f} M params, input {prep.input_size[0]}x{prep.input_size[1]}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    print(f"{'format':<12} {'model ms @' + f'{h}x{w}':>16} {'640x480 frame ms':>18}")
    for backend, path in files.items():
        segmenter = load_segmenter(path, threads=args.threads)
        model_ms = median_ms(lambda s=segmenter: s.backend(x), args.runs, args.warmup)
        frame_ms = median_ms(lambda s=segmenter: s(frame), args.runs, args.warmup)
        print(f"{backend:<12} {model_ms:>16.1f} {frame_ms:>18.1f}")


if __name__ == "__main__":
    run_cli(main)
