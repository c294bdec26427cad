"""What people see of a live background blur, measured: speed, CPU, IoU and flicker on one clip.

The clip is made from test photos (with their true masks) the way a webcam would see the
person: each photo held for a while with the camera still (a laptop on a desk: only sensor noise
and compression change), then moved by hand (slow drift, zoom, tremor). Everything runs through
webcam.py's own loop (lib.live.loop.run), so the numbers are what `python webcam.py` does.
"""

import contextlib
import io
import statistics
import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from lib.live.compose import Compositor
from lib.live.loop import Options, Stats, run
from lib.live.preprocess import read_frame
from lib.live.sinks import Sink
from lib.live.sources import Frame, Source
from lib.training.masks import read_mask
from lib.training.metrics import boundary_f, flicker_rate
from lib.training.pairs import Pair


@dataclass
class Clip:
    frames: list[np.ndarray]  # BGR uint8
    truths: list[np.ndarray]  # {0, 1} at the frame's size
    moving: list[bool]  # the hand-held half of each photo's frames
    first: list[bool]  # the cut to the next photo


def read_stills(pairs: list[Pair]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(read_frame(p.image_path), read_mask(p.mask_path, p.layout)) for p in pairs]


def make_clip(stills, size=(640, 480), per_still: int = 24, still_share: float = 0.5, seed: int = 0) -> Clip:
    """Each still framed to fill a `size` (width, height) frame, `per_still` frames: the first
    still_share with a fixed camera, the rest hand-held. Sensor noise and JPEG on every frame."""
    rng = np.random.default_rng(seed)
    width, height = size
    clip = Clip([], [], [], [])
    for image, mask in stills:
        h, w = image.shape[:2]
        cover = max(width / w, height / h)
        phase = rng.uniform(0, 2 * np.pi, 4)
        for t in range(per_still):
            moving = t >= per_still * still_share
            wave = np.sin(2 * np.pi * t / np.array([37.0, 29.0, 43.0, 53.0]) + phase) if moving else np.zeros(4)
            tremor = rng.normal(0, 0.7, 3) if moving else np.zeros(3)
            dx, dy = 0.02 * width * wave[0] + tremor[0], 0.015 * height * wave[1] + tremor[1]
            zoom = cover * (1.04 + 0.03 * wave[2])
            matrix = cv2.getRotationMatrix2D((w / 2, h * 0.42), 1.5 * wave[3] + 0.1 * tremor[2], zoom)
            matrix[:, 2] += (width / 2 - w / 2 + dx, height / 2 - h * 0.42 + dy)
            frame = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            truth = cv2.warpAffine(mask * 255, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            noisy = np.clip(frame + rng.normal(0, 3.0, frame.shape), 0, 255).astype(np.uint8)
            quality = int(rng.integers(70, 92))
            frame = cv2.imdecode(cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
            clip.frames.append(frame)
            clip.truths.append((truth >= 128).astype(np.uint8))
            clip.moving.append(moving)
            clip.first.append(t == 0)
    return clip


class ClipSource(Source):
    """The clip's frames as a live camera would hand them over (already decoded, never dropped)."""

    def __init__(self, frames: list[np.ndarray], fps: float = 30.0):
        self.frames, self.fps, self.index = frames, fps, 0
        self.name = "clip"

    def read(self) -> Frame | None:
        if self.index >= len(self.frames):
            return None
        self.index += 1
        return Frame(self.frames[self.index - 1], f"{self.index:06d}")


class MatteSink(Sink):
    """Keeps the person masks of an alpha-mode run (alpha >= 128), for scoring."""

    def __init__(self):
        self.masks: list[np.ndarray] = []

    def write(self, image: np.ndarray, name: str) -> None:
        self.masks.append(image[..., 3] >= 128)


def clip_quality(masks: list[np.ndarray], clip: Clip) -> dict:
    """IoU summed over every frame; boundary F per frame at the frame's size (the outline the
    viewer sees), averaged; flicker: the share of pixels whose label flips between two frames of
    the same photo while the truth does not, in the still and the moving part."""
    inter = union = 0
    flips, edges = {False: [], True: []}, []
    for i, (pred, truth) in enumerate(zip(masks, clip.truths, strict=True)):
        inter += np.count_nonzero(pred & (truth > 0))
        union += np.count_nonzero(pred | (truth > 0))
        edges.append(boundary_f(pred, truth))
        if i and not clip.first[i] and clip.moving[i] == clip.moving[i - 1]:
            flips[clip.moving[i]].append(flicker_rate(masks[i - 1], pred, clip.truths[i - 1], truth))
    return {
        "iou": inter / max(union, 1),
        "boundary_f": float(np.mean(edges)),
        "flicker_still": float(np.mean(flips[False])) if flips[False] else 0.0,
        "flicker_moving": float(np.mean(flips[True])) if flips[True] else 0.0,
    }


def speed(opts: Options, frames: list[np.ndarray], segmenter=None, repeats: int = 1) -> dict:
    """End to end through webcam.py's loop in blur mode, no output (like a window or a virtual
    camera): frames per second, model ms, and CPU seconds per frame of the whole process."""
    best = None
    for _ in range(repeats):  # the machine is shared: the best of a few runs is the machine's speed
        cpu = time.process_time()
        with _quiet():
            stats: Stats = run(replace(opts, mode="blur", benchmark=True, display=False), segmenter, ClipSource(frames))
        cpu = time.process_time() - cpu
        result = {
            "fps": stats.fps,
            "model_ms": 1000 * stats.model_s / max(stats.model_runs, 1),
            "cpu_ms_per_frame": 1000 * cpu / stats.frames,
            "model_calls": (stats.model_runs + 1) / stats.frames,  # the first frame's run is left out of model_runs
        }
        best = result if best is None or result["fps"] > best["fps"] else best
    return best


def quality(opts: Options, clip: Clip, segmenter=None) -> dict:
    """The same loop in alpha mode (the matte that blur and replace blend with), scored on the clip."""
    sink = MatteSink()
    with _quiet():
        stats = run(
            replace(opts, mode="alpha", benchmark=False, display=False), segmenter, ClipSource(clip.frames), [sink]
        )
    return clip_quality(sink.masks, clip) | {"model_calls": (stats.model_runs + 1) / stats.frames}


def compositing_ms(frame: np.ndarray, prob: np.ndarray, refine: bool, runs: int = 50) -> float:
    """Median ms of the blur compositor on one frame, with or without the guided-filter refinement."""
    compositor = Compositor("blur", refine=refine)
    times = []
    for _ in range(runs + 3):
        start = time.perf_counter()
        compositor(frame, prob)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[3:])


@contextlib.contextmanager
def _quiet():
    """run() ends with its stats line; the benchmark prints its own table instead."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
