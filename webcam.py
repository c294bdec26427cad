"""Live person segmentation: blur or replace the background, show it, record it, or feed a virtual camera.

python webcam.py                                   # camera 0, background blurred, in a window
python webcam.py --ckpt experiments/exp1/weights/best.onnx --mode replace --background beach.jpg
python webcam.py --source talk.mp4 --output talk_blurred.mp4 --no-display
python webcam.py --source photos/ --mode alpha --output cutouts/ --no-display
python webcam.py --source clip.mp4 --no-display --benchmark   # prints frames=N fps=F model_ms=M total_ms=T

Esc or q in the window quits; Ctrl-C stops a headless run and finishes the output file.
"""

import argparse

from lib.compose import MODES
from lib.errors import UserError, run_cli
from lib.inference import BACKENDS
from lib.webcam import DEFAULT_MODEL, ROOT, Options, run


def size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    return width, height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="0", help="camera index, video file, image or folder of images (0)")
    parser.add_argument("--ckpt", help=f"model: .pt, .ts or .onnx (default {DEFAULT_MODEL.relative_to(ROOT)})")
    parser.add_argument("--backend", choices=BACKENDS, help="default: the file's own; a .pt can run as any")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="CPU threads per model run (default: cores / model workers)")
    parser.add_argument("--mode", choices=MODES, help="blur (default), replace (needs --background), mask, alpha")
    parser.add_argument("--blur-strength", type=float, default=1.0, help="background blur radius, 1 = default")
    parser.add_argument("--background", help="image or video behind the person (--mode replace; resized to fit)")
    parser.add_argument("--feather", type=float, default=0.02, help="mask edge softness, share of the short side")
    parser.add_argument("--output", help="write the result: video (.mp4 .avi .mkv), image file, or folder")
    parser.add_argument("--fourcc", help="video codec for --output (default by suffix: mp4v, MJPG, FFV1)")
    parser.add_argument("--no-display", action="store_true", help="no window (headless use)")
    parser.add_argument("--virtual-cam", action="store_true", help="send frames to a virtual camera (pyvirtualcam)")
    parser.add_argument(
        "--smooth", action=argparse.BooleanOptionalAction, default=True, help="steady the mask over time (on)"
    )
    parser.add_argument("--smooth-momentum", type=float, default=0.8, help="how much unsure pixels keep (0-1)")
    parser.add_argument(
        "--model-workers", type=int, default=1, help="frames in the model at once: more FPS on a CPU, more latency (1)"
    )
    parser.add_argument("--every", type=int, default=1, help="run the model on every N-th frame only")
    parser.add_argument("--benchmark", action="store_true", help="end with: frames=N fps=F model_ms=M total_ms=T")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--camera-size", type=size, help="ask the camera for WIDTHxHEIGHT, e.g. 1280x720")
    parser.add_argument("--no-stats", action="store_true", help="no FPS text in the window")
    parser.add_argument("--sequential", action="store_true", help="no reader/writer threads (for comparisons)")
    args = parser.parse_args()
    if args.mode is None:
        args.mode = "replace" if args.background else "blur"
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames {args.max_frames}: expected 1 or more")
    run(
        Options(
            source=args.source, ckpt=args.ckpt, backend=args.backend, device=args.device, threads=args.threads,
            mode=args.mode, blur_strength=args.blur_strength, background=args.background, feather=args.feather,
            output=args.output, fourcc=args.fourcc, display=not args.no_display, virtual_cam=args.virtual_cam,
            smooth=args.smooth, momentum=args.smooth_momentum, every=args.every, benchmark=args.benchmark,
            max_frames=args.max_frames, camera_size=args.camera_size, show_stats=not args.no_stats,
            pipeline=not args.sequential, workers=args.model_workers,
        )
    )  # fmt: skip


if __name__ == "__main__":
    run_cli(main)
