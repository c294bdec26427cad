"""Live person segmentation: blur or replace the background, show it, record it, or feed a virtual camera.

python webcam.py                                   # camera 0, background blurred, in a window
python webcam.py --ckpt experiments/exp1/weights/best.onnx --background beach.jpg   # --mode replace
python webcam.py --source talk.mp4 --output talk_blurred.mp4 --no-display
python webcam.py --source photos/ --mode alpha --output cutouts/ --no-display
python webcam.py --source clip.mp4 --no-display --benchmark   # prints frames=N fps=F model_ms=M total_ms=T

In the window: m next mode, + / - blur stronger / weaker, s smoothing on/off, f FPS line on/off,
Esc or q quits (closing the window too). Ctrl-C, SIGTERM (kill, a service manager) and SIGHUP (the
terminal closed) stop a run the same way: the output file is finished, the summary line printed.
A file run without a window shows a progress bar on a terminal (none in a pipe or a log).
Exit status: 0 done or stopped (the output complete), 1 camera lost (the recording so far kept)
or --output taken by another program meanwhile (the result kept beside it), 2 bad input.
Needs only requirements-live.txt (ONNX Runtime, OpenCV, numpy, pygame-ce, PyAV) for .onnx models.
"""

import argparse
import sys

from lib import ROOT
from lib.live.compose import MODES
from lib.live.errors import run_cli
from lib.live.loop import DEFAULT_MODEL, run
from lib.live.options import Options, refuse_unused
from lib.live.segmenter import BACKENDS, missing_package
from lib.live.sinks import OPENCV_CODECS


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, like every other mistake (argparse's default adds the whole usage)."""
        print(f"error: {message} (see python webcam.py --help)", file=sys.stderr)
        sys.exit(2)


def size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    return width, height


def parse_options() -> Options:
    """Flags named after Options' fields; a flag left out keeps the field's default (stated once, there)."""
    d = Options()
    parser = Parser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS
    )
    add = parser.add_argument
    add("--source", help=f"camera index, video file, image or folder of images ({d.source})")
    add("--ckpt", help=f"model: .pt, .ts or .onnx (default {DEFAULT_MODEL.relative_to(ROOT)})")
    add("--backend", choices=BACKENDS, help="default: the file's own; a .pt can run as any")
    add("--device", help=f"cpu or cuda ({d.device})")
    add(
        "--landscape-size",
        help="the network's input box for frames wider than tall, HEIGHTxWIDTH (default: the model file's; "
        "the shipped default runs 224x384; 192x256 is faster and finds fewer small people)",
    )
    add("--input-size", help="the network's input box for every frame, HEIGHTxWIDTH, turned to its orientation")
    add("--threads", type=int, help="CPU threads per model run (default: cores / model workers)")
    add("--mode", choices=MODES, help="blur (default), replace (the default with --background), mask, alpha")
    add("--blur-strength", type=float, help=f"background blur radius, 1 = default ({d.blur_strength})")
    add(
        "--background",
        help="image or video behind the person, scaled to cover the frame (cropped, never stretched); "
        "implies --mode replace, and any other --mode is refused",
    )
    add("--feather", type=float, help=f"mask edge softness, share of the short side ({d.feather})")
    add(
        "--output",
        help="write the result: video (.mp4 .mov .mkv .avi, with the source's sound tracks and subtitles), image "
        "file, or folder; photos of other sizes are fitted into the first one's frame (black bars); a device or "
        "pipe is refused",
    )
    add("--overwrite", action="store_true", help="replace an existing --output (kept until the new one is complete)")
    add("--fourcc", help=f"write the video with OpenCV and this codec instead ({', '.join(OPENCV_CODECS)}; no sound)")
    add("--no-display", dest="display", action="store_false", help="no window (headless use)")
    add("--virtual-cam", action="store_true", help="send frames to a virtual camera (pyvirtualcam)")
    add("--smooth", action=argparse.BooleanOptionalAction, help="steady the mask over time (on)")
    add("--smooth-momentum", dest="momentum", type=float, help=f"how much unsure pixels keep, 0-1 ({d.momentum})")
    add(
        "--model-workers",
        dest="workers",
        type=int,
        help=f"frames in the model at once: more FPS on a CPU, more latency ({d.workers})",
    )
    add("--every", type=int, help=f"run the model on every N-th frame only ({d.every})")
    add(
        "--change-threshold",
        type=float,
        help="rerun the model only when the picture changed by this many grey levels (mean over a thumbnail; "
        f"1.5 halves the work of a still camera; 0: every frame) ({d.change_threshold})",
    )
    add("--max-skip", type=int, help=f"with --change-threshold: frames the model may skip in a row ({d.max_skip})")
    add(
        "--refine",
        action=argparse.BooleanOptionalAction,
        help=f"sharpen the mask's outline along the frame's edges ({'on' if d.refine else 'off'})",
    )
    add("--benchmark", action="store_true", help="end with: frames=N fps=F model_ms=M total_ms=T")
    add("--max-frames", type=int, help="stop after this many frames")
    add("--size", "--camera-size", dest="camera_size", type=size, help="ask the camera for WIDTHxHEIGHT, e.g. 1280x720")
    add("--camera-fps", type=float, help="ask the camera for this frame rate, e.g. 30 (it says what it delivers)")
    add("--no-stats", dest="show_stats", action="store_false", help="no FPS text in the window")
    add("--sequential", dest="pipeline", action="store_false", help="no reader/writer threads (for comparisons)")
    flags = vars(parser.parse_args())
    if "mode" not in flags and flags.get("background"):  # a background is asked for: show it (see --help)
        flags["mode"] = "replace"
    options = Options(**flags)
    refuse_unused(set(flags), options)
    return options


def main() -> None:
    options = parse_options()
    if options.backend not in (None, "onnx") or (options.ckpt and not options.ckpt.lower().endswith(".onnx")):
        torch_loaders()
    run(options)


def torch_loaders() -> None:
    """A model file other than .onnx needs torch: the training stack's loaders, where it is installed.
    Without it (the live-only install), load_segmenter says in one line what is missing."""
    if missing_package() is None:
        import lib.training.inference  # noqa: F401  (fills lib.live.segmenter.LOADERS)


if __name__ == "__main__":
    run_cli(main)
