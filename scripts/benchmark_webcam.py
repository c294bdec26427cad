"""Benchmarks for webcam.py on clips made from still portraits with simulated camera motion.

speed: end to end (read, segment, blur, write) on a 640x480 clip, through lib.webcam.run.
Without --ckpt it builds untrained models of the given architectures (speed does not depend on
the weights) and says so.

    python scripts/benchmark_webcam.py speed
    python scripts/benchmark_webcam.py speed --models Unet:mobilenet_v2:256x192,UnetPlusPlus:resnet18:384x288
    python scripts/benchmark_webcam.py speed --ckpt models/lite.onnx --every 2

flicker: the share of pixels whose predicted label flips between consecutive frames while the
true label does not, beside the IoU on the same clip, without and with temporal smoothing.

    python scripts/benchmark_webcam.py flicker --ckpt models/lite.onnx [--data ../shared/data/pfcn_aisegment]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib.compose import TemporalSmoother  # noqa: E402
from lib.errors import UserError, run_cli  # noqa: E402
from lib.export import export_onnx  # noqa: E402
from lib.inference import load_segmenter  # noqa: E402
from lib.metrics import flicker_rate  # noqa: E402
from lib.model import create  # noqa: E402
from lib.model_info import ModelInfo, ModelSpec  # noqa: E402
from lib.pairs import read_image, read_mask, scan_root  # noqa: E402
from lib.preprocess import Preprocess  # noqa: E402
from lib.webcam import Options, model_view, run  # noqa: E402

DEFAULT_MODELS = "Unet:mobilenet_v2:256x192,Unet:mobilenet_v2:320x240,UnetPlusPlus:resnet18:384x288"


def read_stills(root: str, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(BGR image, {0,1} mask) pairs from a data root, evenly spread over it."""
    pairs = scan_root(root).pairs
    if not pairs:
        raise UserError(f"--data {root}: no usable photo/mask pairs")
    pairs = pairs[:: max(1, len(pairs) // limit)][:limit]
    return [
        (cv2.cvtColor(read_image(p.image_path), cv2.COLOR_RGB2BGR), read_mask(p.mask_path, p.layout)) for p in pairs
    ]


def shaky_clip(stills, size=(640, 480), frames_per_still: int = 20, seed: int = 0, motion: float = 1.0):
    """Yield (frame, mask, first) as a webcam would see a still scene: each still framed head-and-shoulders,
    a hand-held camera's slow drift and zoom plus tremor (scaled by `motion`), sensor noise and JPEG
    compression per frame. `first` marks the cut to the next still."""
    rng = np.random.default_rng(seed)
    width, height = size
    for image, mask in stills:
        h, w = image.shape[:2]
        cover = max(width / w, height / h)
        phase = rng.uniform(0, 2 * np.pi, 4)
        for t in range(frames_per_still):
            wave = np.sin(2 * np.pi * t / np.array([37.0, 29.0, 43.0, 53.0]) + phase)
            dx = motion * (0.02 * width * wave[0] + rng.normal(0, 0.7))
            dy = motion * (0.015 * height * wave[1] + rng.normal(0, 0.7))
            zoom = cover * (1.04 + 0.03 * motion * wave[2])
            angle = motion * (1.5 * wave[3] + rng.normal(0, 0.1))
            matrix = cv2.getRotationMatrix2D((w / 2, h * 0.42), angle, zoom)
            matrix[:, 2] += (width / 2 - w / 2 + dx, height / 2 - h * 0.42 + dy)
            frame = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            truth = cv2.warpAffine(mask * 255, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            noisy = np.clip(frame + rng.normal(0, 4.0, frame.shape), 0, 255).astype(np.uint8)
            quality = int(rng.integers(60, 90))
            frame = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
            yield frame, (truth >= 128).astype(np.uint8), t == 0


def write_clip(path: Path, data: str, frames: int, size=(640, 480), fps: float = 30.0) -> Path:
    stills = read_stills(data, limit=16)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    clip = shaky_clip(stills * (frames // (20 * len(stills)) + 1), size, frames_per_still=20)
    for _, (frame, _, _) in zip(range(frames), clip, strict=False):
        writer.write(frame)
    writer.release()
    return path


def untrained_onnx(spec: str, folder: Path) -> Path:
    """arch:encoder:WxH[:decoder channels] (e.g. 256x192: 256 wide) -> an untrained model exported to ONNX."""
    try:
        arch, encoder, box, *decoder = spec.split(":")
        width, height = (int(v) for v in box.lower().split("x"))
        kwargs = {"decoder_channels": [int(c) for c in decoder[0].split("-")]} if decoder else {}
    except ValueError:
        raise UserError(
            f"--models {spec!r}: expected ARCH:ENCODER:WIDTHxHEIGHT[:DECODER-CHANNELS], e.g. Unet:mobilenet_v2:256x192 "
            "or Unet:mobilenet_v2:256x192:128-64-32-16-8"
        ) from None
    torch.manual_seed(0)
    model = create(arch, encoder, kwargs).eval()
    info = ModelInfo(ModelSpec(arch, encoder, kwargs), Preprocess((height, width)))
    return export_onnx(model, info, folder / f"{spec.replace(':', '_')}.onnx")


def speed(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-webcam-"))
    clip = Path(args.clip) if args.clip else write_clip(folder / "clip.mp4", args.data, args.frames)
    cap = cv2.VideoCapture(str(clip))
    size = f"{int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    cap.release()
    if args.ckpt:
        models = [(args.ckpt, args.ckpt)]
    else:
        print("no --ckpt: untrained models of these architectures (speed does not depend on the weights)")
        models = [(spec, untrained_onnx(spec, folder)) for spec in args.models.split(",")]
    print(
        f"clip {clip.name} {size}, {os.cpu_count()} CPU cores, backend {args.backend or 'onnx'}, mode blur, "
        f"output mp4v; threads={args.threads or 'default'} model-workers={args.model_workers} every={args.every} "
        f"pipeline={not args.sequential}"
    )
    for name, path in models:
        for _ in range(args.repeats):
            opts = Options(
                source=str(clip),
                ckpt=str(path),
                backend=args.backend,
                threads=args.threads,
                mode="blur",
                output=str(folder / "out.mp4"),
                display=False,
                benchmark=False,
                every=args.every,
                pipeline=not args.sequential,
                workers=args.model_workers,
            )
            stats = run(opts)
            print(f"{name:<36} {stats.summary()}", flush=True)


def flicker(args) -> None:
    seg = load_segmenter(args.ckpt, args.backend, threads=args.threads)
    stills = read_stills(args.data, args.stills)
    print(
        f"model {args.ckpt} ({seg.name}); clip: {len(stills)} stills from {args.data}, {args.per_still} frames "
        f"each at 640x480, simulated hand-held motion (x{args.motion:g}), noise, JPEG"
    )
    probs, truths, starts = [], [], []
    start = time.perf_counter()
    for frame, truth, first in shaky_clip(stills, frames_per_still=args.per_still, seed=args.seed, motion=args.motion):
        probs.append(seg(model_view(frame, seg.prep)))
        truths.append(truth)
        starts.append(first)
    print(f"{len(probs)} frames segmented in {time.perf_counter() - start:.1f} s")
    settings = [("no smoothing", 0.0, 1)] + [(f"smoothing {m:g}", m, 1) for m in args.momentum]
    settings += [(f"smoothing {args.momentum[0]:g}, model every 2nd frame", args.momentum[0], 2)]
    settings += [("frozen: each still's first mask (reference)", 0.0, 10**9)]  # never flickers, and lags
    print(f"{'setting':<44} {'flicker %':>9} {'IoU':>6}")
    for label, momentum, every in settings:
        rate, iou = score(probs, truths, starts, momentum, every)
        print(f"{label:<44} {100 * rate:9.3f} {iou:6.3f}")


def score(probs, truths, starts, momentum: float, every: int) -> tuple[float, float]:
    """Mean flicker over consecutive frames of the same still, and IoU summed over all frames."""
    smoother = TemporalSmoother(momentum)
    flips, inter, union = [], 0, 0
    prev_pred = prev_truth = prob = None
    for i, (raw, truth, first) in enumerate(zip(probs, truths, starts, strict=True)):
        if first:
            smoother.reset()  # a cut to the next still: no flicker is counted across it
            prev_pred = None
        if first or i % every == 0:
            prob = smoother(raw)
        pred = cv2.resize(prob, truth.shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5
        if prev_pred is not None:
            flips.append(flicker_rate(prev_pred, pred, prev_truth, truth))
        inter += np.count_nonzero(pred & (truth > 0))
        union += np.count_nonzero(pred | (truth > 0))
        prev_pred, prev_truth = pred, truth
    return float(np.mean(flips)), inter / max(union, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("speed", "flicker"):
        p = sub.add_parser(name)
        p.add_argument("--ckpt", required=name == "flicker", help="model file (.pt, .ts, .onnx)")
        p.add_argument("--backend", choices=("torch", "torchscript", "onnx"), help="default: the file's own")
        p.add_argument("--threads", type=int, help="model CPU threads (default: all cores)")
        p.add_argument("--data", default="samples/portraits", help="photo/mask pairs for the clip")
    speed_p, flicker_p = sub.choices["speed"], sub.choices["flicker"]
    speed_p.add_argument("--models", default=DEFAULT_MODELS, help="without --ckpt: ARCH:ENCODER:WxH,...")
    speed_p.add_argument("--clip", help="a video to use instead of the generated 640x480 clip")
    speed_p.add_argument("--frames", type=int, default=300, help="length of the generated clip")
    speed_p.add_argument("--every", type=int, default=1, help="run the model on every N-th frame")
    speed_p.add_argument("--model-workers", type=int, default=1, help="frames in the model at once")
    speed_p.add_argument("--repeats", type=int, default=1, help="runs per model (the machine is shared)")
    speed_p.add_argument("--sequential", action="store_true", help="no reader/writer threads")
    flicker_p.add_argument("--stills", type=int, default=16, help="how many photos")
    flicker_p.add_argument("--per-still", type=int, default=20, help="frames per photo")
    flicker_p.add_argument("--momentum", type=float, nargs="+", default=[0.8, 0.9], help="smoothing (0.8: default)")
    flicker_p.add_argument("--motion", type=float, default=1.0, help="scale the simulated camera motion")
    flicker_p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    speed(args) if args.command == "speed" else flicker(args)


if __name__ == "__main__":
    run_cli(main)
