"""webcam.py's settings (Options) and their checks: every number in its range, no option that does
nothing in the chosen mode, one line naming the flag for each mistake."""

import re
from dataclasses import dataclass

from lib.live.checks import check_number
from lib.live.compose import MODES
from lib.live.errors import UserError
from lib.live.preprocess import Preprocess, with_boxes

# field: (flag, lowest, highest, what it is). The bounds are where a value still means something:
# a blur radius of 20x the default already covers the frame, and far beyond it OpenCV's kernel overflows.
RANGES = {
    "blur_strength": ("--blur-strength", 0.05, 20.0, "blur radius, 1 = default"),
    "feather": ("--feather", 0.0, 0.5, "share of the short side"),
    "momentum": ("--smooth-momentum", 0.0, 0.99, "how much unsure pixels keep"),
    "threads": ("--threads", 1, 256, "CPU threads per model run"),
    "workers": ("--model-workers", 1, 16, "frames in the model at once"),
    "every": ("--every", 1, 10_000, "run the model on every N-th frame"),
    "change_threshold": ("--change-threshold", 0.0, 255.0, "grey levels"),
    "max_skip": ("--max-skip", 0, 10_000, "frames skipped in a row"),
    "max_frames": ("--max-frames", 1, 10**9, "frames"),
    "camera_fps": ("--camera-fps", 1, 1000, "frames per second asked of the camera"),
}
SIZE_RANGE = (16, 8192)  # --size: a camera mode's width and height
BLUR_RANGE = RANGES["blur_strength"][1:3]


@dataclass
class Options:
    source: str = "0"
    ckpt: str | None = None
    backend: str | None = None
    device: str = "cpu"
    threads: int | None = None
    mode: str = "blur"
    blur_strength: float = 1.0
    background: str | None = None
    feather: float = 0.02
    output: str | None = None
    overwrite: bool = False
    fourcc: str | None = None
    display: bool = True
    virtual_cam: bool = False
    smooth: bool = True
    momentum: float = 0.8
    every: int = 1
    change_threshold: float = 0.0  # > 0: rerun the model only when the picture changed (ChangeGate)
    max_skip: int = 5
    refine: bool = False
    benchmark: bool = False
    max_frames: int | None = None
    camera_size: tuple[int, int] | None = None
    camera_fps: float | None = None
    show_stats: bool = True
    pipeline: bool = True
    workers: int = 1
    input_size: str | None = None  # 'HEIGHTxWIDTH': the network's input box instead of the file's
    landscape_size: str | None = None  # the same for frames wider than tall only


def check_ranges(opts: Options) -> None:
    for name, (flag, low, high, what) in RANGES.items():
        wanted = f"{_span(low, high)} ({what})"
        check_number(flag, getattr(opts, name), low=low, high=high, optional=True, expected=wanted, typed=True)
    if opts.camera_size is not None:
        width, height = opts.camera_size
        if not all(SIZE_RANGE[0] <= v <= SIZE_RANGE[1] for v in (width, height)):
            raise UserError(f"--size {width}x{height}: width and height from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}")


def _span(low, high) -> str:
    return f"{low} or more" if high >= 10**9 else f"a value from {low} to {high}"


def validate(opts: Options, more_sinks: bool = False) -> None:
    """Everything that can be said about the settings alone, before a file is opened."""
    check_ranges(opts)
    with_boxes(Preprocess(input_size=(256, 192)), opts.input_size, opts.landscape_size)  # the checks, before any file
    if opts.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", opts.device):
        raise UserError(f"--device {opts.device}: expected cpu, cuda or cuda:N")
    if opts.mode not in MODES:
        raise UserError(f"--mode {opts.mode}: expected one of {', '.join(MODES)}")
    if opts.mode == "replace" and not opts.background:
        raise UserError("--mode replace needs --background IMAGE_OR_VIDEO")
    if opts.background and opts.mode != "replace":
        raise UserError(f"--background is only used with --mode replace (got --mode {opts.mode})")
    if opts.change_threshold > 0 and opts.every > 1:
        raise UserError("--every N and --change-threshold T both decide which frames the model sees: pass one")
    if not opts.display and not opts.output and not opts.virtual_cam and not opts.benchmark and not more_sinks:
        raise UserError("--no-display leaves nothing to do: add --output FILE, --virtual-cam or --benchmark")


def refuse_unused(given: set[str], opts: Options) -> None:
    """Flags the user typed that would do nothing with the other settings: said, not ignored.

    given: the Options fields set on the command line (the defaults of the rest do no harm)."""
    is_camera = opts.source.lstrip("-").isdigit() or opts.source.startswith("/dev/")
    rules = [
        ("blur_strength", opts.mode != "blur", f"--blur-strength only changes --mode blur (got --mode {opts.mode})"),
        ("feather", opts.refine, "--feather does nothing with --refine (the outline follows the frame's edges)"),
        ("momentum", not opts.smooth, "--smooth-momentum does nothing with --no-smooth"),
        ("max_skip", opts.change_threshold == 0, "--max-skip only works with --change-threshold T"),
        ("camera_size", not is_camera, f"--size is asked of a camera; --source {opts.source} is not one"),
        ("camera_fps", not is_camera, f"--camera-fps is asked of a camera; --source {opts.source} is not one"),
        ("fourcc", not opts.output, "--fourcc needs --output VIDEO"),
        ("overwrite", not opts.output, "--overwrite needs --output"),
        ("show_stats", not opts.display, "--no-stats only changes the window; --no-display has none"),
    ]
    for name, useless, message in rules:
        if name in given and useless:
            raise UserError(message)
