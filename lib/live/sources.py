"""Where frames come from: a camera, a video file or stream, an image, a folder of images; and
the --background picture or video behind the person.

Sources hand out BGR uint8 frames with a name (used to name image-folder output). A live source
(camera, stream) raises SourceLost when it stops mid-stream, so what was recorded is kept.
"""

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lib.live.compose import fit_background
from lib.live.errors import UserError
from lib.live.files import opencv_name
from lib.live.preprocess import IMAGE_SUFFIXES, read_image

SOURCE_HELP = "a camera index (0), a video file, an image, or a folder of images"


class SourceLost(UserError):
    """A live source stopped mid-stream (camera unplugged); what was recorded is kept."""

    exit_code = 1
    stats = None  # the run's numbers so far (lib.live.stats.Stats), set by lib.live.loop.run


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8 BGR
    name: str  # stem for image-folder output
    read_s: float = 0.0  # seconds the source took to hand it over (lib.live.stream; the loop's stats)


def quiet_capture(target: int | str) -> cv2.VideoCapture:
    """VideoCapture without OpenCV's backend warnings on a failed open; our message says it better.
    Any file name (lib.live.files.opencv_name: OpenCV crashes on names that are not UTF-8)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        if isinstance(target, int) or "://" in target:
            return cv2.VideoCapture(target)
        with opencv_name(target) as name:
            return cv2.VideoCapture(name)
    finally:
        cv2.utils.logging.setLogLevel(level)


class Source:
    """Iterate for frames; `live` sources (cameras, streams) drop frames rather than queue them."""

    name = "source"
    live = False
    fps = 30.0

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame


class CaptureSource(Source):
    """cv2.VideoCapture: a camera index, a video file, a device path or a stream URL."""

    def __init__(
        self, target: int | str, live: bool, size: tuple[int, int] | None = None, retries: int = 10,
        fps: float | None = None,
    ):  # fmt: skip
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self.live = live
        self.retries = retries  # a camera may miss a frame now and then; a run of misses means it is gone
        self.count = 0
        self.cap = quiet_capture(target)
        if not self.cap.isOpened():
            if isinstance(target, int):
                raise UserError(
                    f"--source {target}: no camera at index {target} (OpenCV could not open it). Check that it "
                    "is connected and not in use by another program, or try another index; --source also takes "
                    "a video file, an image or a folder of images"
                )
            raise UserError(f"--source {target}: OpenCV cannot open it as a video (not a video, or an unknown codec)")
        if _fourcc(self.cap) == "ansi":  # FFmpeg renders any text file as a video of its characters
            self.cap.release()
            raise UserError(f"--source {target}: a text file, not a video")
        camera = isinstance(target, int) or str(target).startswith("/dev/")
        if camera:
            ask_camera(self.cap, size, fps)
        delivered = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = delivered if 1 <= delivered <= 240 else 30.0
        self.expected = 0 if live else int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))  # from the file's header
        self.audio_path = None if live else str(target)  # its sound, for a video output
        self.first = self._grab()
        if self.first is None:
            self.cap.release()
            what = "the camera opened but sent no frame" if live else "no frame could be decoded from it"
            raise UserError(f"--source {target}: {what}")
        if camera:
            height, width = self.first.shape[:2]
            print(
                f"{self.name}: {width}x{height} at {self.fps:g} fps, {_fourcc(self.cap) or 'unknown format'}"
                f"{_asked(size, fps)}",
                file=sys.stderr,
                flush=True,
            )

    def _grab(self) -> np.ndarray | None:
        for _ in range(self.retries if self.live else 1):
            ok, image = self.cap.read()
            if ok and image is not None:
                return image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            if self.live:
                time.sleep(0.02)
        return None

    def read(self) -> Frame | None:
        image, self.first = (self.first, None) if self.first is not None else (self._grab(), None)
        if image is None:
            if self.live:
                raise SourceLost(
                    f"{self.name} stopped sending frames after {self.count} frames (disconnected?); "
                    "the output so far was finished and kept"
                )
            if self.count + 1 < self.expected:  # one frame of slack: some containers round the count
                print(
                    f"warning: {self.name} ended after {self.count} of the {self.expected} frames its header "
                    "announces (truncated or damaged?); the output holds those",
                    file=sys.stderr,
                    flush=True,
                )
                self.expected = 0
            return None  # end of the file
        self.count += 1
        return Frame(image, f"{self.count:06d}")

    def close(self) -> None:
        self.cap.release()


def ask_camera(cap: cv2.VideoCapture, size: tuple[int, int] | None, fps: float | None) -> None:
    """The camera's best mode: MJPG first (most USB webcams deliver 720p and 1080p at 30 fps only
    compressed; uncompressed YUYV falls to 5-10 fps there), then the size and the frame rate."""
    cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    if size:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return code.to_bytes(4, "little").decode("ascii", "replace").strip("\x00 ") if code > 0 else ""


def _asked(size: tuple[int, int] | None, fps: float | None) -> str:
    asked = [f"{size[0]}x{size[1]}" if size else "", f"{fps:g} fps" if fps else ""]
    return f" (asked for {', '.join(a for a in asked if a)}, MJPG)" if any(asked) else " (asked for MJPG)"


class ImageSource(Source):
    """One image, or every image of a folder in name order; unreadable files are skipped with a note."""

    fps = 1.0

    def __init__(self, path: Path):
        self.name = str(path)
        if path.is_dir():
            self.paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.paths:
                raise UserError(f"--source {path}: the folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            self.paths = [path]
        self.index = 0
        self.skipped: list[str] = []

    def read(self) -> Frame | None:
        while self.index < len(self.paths):
            path = self.paths[self.index]
            self.index += 1
            image = read_image(path)
            if image is not None:
                return Frame(image, path.stem)
            if len(self.paths) == 1:
                raise UserError(f"--source {path}: not a readable image")
            self.skipped.append(path.name)
            print(f"warning: skipped {path}: not a readable image", file=sys.stderr)
        return None


def open_source(spec: str, camera_size: tuple[int, int] | None = None, camera_fps: float | None = None) -> Source:
    """--source: '0' -> camera 0; a folder; an image; a video file, device or stream URL."""
    spec = str(spec).strip()
    path = Path(spec)
    if spec.lstrip("-").isdigit() and not path.exists():
        index = int(spec)
        if index == -1:  # "any camera", as OpenCV users write it (OpenCV 5 itself crashes on -1)
            return _first_camera(camera_size, camera_fps)
        if index < 0:
            raise UserError(f"--source {spec}: camera indices start at 0 (-1 takes the first camera found)")
        return CaptureSource(index, live=True, size=camera_size, fps=camera_fps)
    if "://" in spec:
        return CaptureSource(spec, live=True)
    if not path.exists():
        raise UserError(f"--source {spec}: no such file or folder (expected {SOURCE_HELP})")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    device = str(path).startswith("/dev/")
    return CaptureSource(spec, live=device, size=camera_size if device else None, fps=camera_fps if device else None)


def _first_camera(camera_size: tuple[int, int] | None, camera_fps: float | None, tried: int = 10) -> "CaptureSource":
    for index in range(tried):
        try:
            return CaptureSource(index, live=True, size=camera_size, fps=camera_fps)
        except UserError:
            continue
    raise UserError(f"--source -1: no camera found (tried indices 0 to {tried - 1}); is one connected and free?")


class Background:
    """--background: an image, or a video that loops; scaled to cover each frame (no stretching)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--background {path}: no such file (expected an image or a video)")
        self.path = path
        self.cap = None
        self.cache: tuple[tuple[int, int], np.ndarray] | None = None
        if path.suffix.lower() in IMAGE_SUFFIXES:
            self.image = read_image(path)
            if self.image is None:
                raise UserError(f"--background {path}: not a readable image")
            return
        self.cap = quiet_capture(str(path))
        ok, self.image = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            raise UserError(f"--background {path}: neither a readable image nor a video OpenCV can decode")

    def next(self, out_hw: tuple[int, int]) -> np.ndarray:
        if self.cap is not None:
            ok, image = self.cap.read()
            if not ok:  # loop the video
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self.cap.read()
            if ok:
                self.image, self.cache = image, None
        if self.cache is None or self.cache[0] != tuple(out_hw):
            self.cache = (tuple(out_hw), fit_background(self.image, out_hw))
        return self.cache[1]

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
