"""Where frames come from and where they go: camera, video, image, folder; window, files, virtual camera.

Sources hand out BGR uint8 frames with a name (used for image-folder output). Sinks never leave
a half-written file behind: a video is written under a hidden temporary name and renamed when
it is finished, and deleted when the run fails; each image is written the same way.
"""

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lib.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")  # image formats that keep an alpha channel
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}
SOURCE_HELP = "a camera index (0), a video file, an image, or a folder of images"


class SourceLost(UserError):
    """A live source stopped mid-stream (camera unplugged); what was recorded is kept."""

    exit_code = 1


class DisplayUnavailable(Exception):
    """No window can be opened: a headless OpenCV build, or no screen."""


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8 BGR
    name: str  # stem for image-folder output


def quiet_capture(target: int | str) -> cv2.VideoCapture:
    """VideoCapture without OpenCV's backend warnings on a failed open; our message says it better."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(target)
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

    def __init__(self, target: int | str, live: bool, size: tuple[int, int] | None = None, retries: int = 10):
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
        codec = int(self.cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        if codec == b"ansi":  # FFmpeg renders any text file as a video of its characters
            self.cap.release()
            raise UserError(f"--source {target}: a text file, not a video")
        if size:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1 <= fps <= 240 else 30.0
        self.first = self._grab()
        if self.first is None:
            self.cap.release()
            what = "the camera opened but sent no frame" if live else "no frame could be decoded from it"
            raise UserError(f"--source {target}: {what}")

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
            return None  # end of the file
        self.count += 1
        return Frame(image, f"{self.count:06d}")

    def close(self) -> None:
        self.cap.release()


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
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return Frame(image, path.stem)
            if len(self.paths) == 1:
                raise UserError(f"--source {path}: not a readable image")
            self.skipped.append(path.name)
            print(f"warning: skipped {path}: not a readable image", file=sys.stderr)
        return None


def open_source(spec: str, camera_size: tuple[int, int] | None = None) -> Source:
    """--source: '0' -> camera 0; a folder; an image; a video file, device or stream URL."""
    spec = str(spec).strip()
    path = Path(spec)
    if spec.isdigit() and not path.exists():
        return CaptureSource(int(spec), live=True, size=camera_size)
    if "://" in spec:
        return CaptureSource(spec, live=True)
    if not path.exists():
        raise UserError(f"--source {spec}: no such file or folder (expected {SOURCE_HELP})")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return CaptureSource(spec, live=str(path).startswith("/dev/"))


class Background:
    """--background: an image, or a video that loops; scaled to cover each frame (no stretching)."""

    def __init__(self, path: str | Path):
        from lib.compose import fit_background

        self.fit = fit_background
        path = Path(path)
        if not path.is_file():
            raise UserError(f"--background {path}: no such file (expected an image or a video)")
        self.path = path
        self.cap = None
        self.cache: tuple[tuple[int, int], np.ndarray] | None = None
        if path.suffix.lower() in IMAGE_SUFFIXES:
            self.image = cv2.imread(str(path), cv2.IMREAD_COLOR)
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
            self.cache = (tuple(out_hw), self.fit(self.image, out_hw))
        return self.cache[1]

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()


def as_bgr(image: np.ndarray) -> np.ndarray:
    """What a 3-channel sink shows of a BGRA frame (alpha mode): the matte itself, as grey."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image[..., 3]), cv2.COLOR_GRAY2BGR)
    return image


def _partial(path: Path) -> Path:
    """Hidden name beside the target, same suffix (OpenCV picks the container from it)."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


class Sink:
    def write(self, image: np.ndarray, name: str) -> None:
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        """ok=False: the run failed; leave nothing half-written behind."""


class VideoSink(Sink):
    """Video file; every frame scaled to the first frame's size. Written to a temporary name first."""

    def __init__(self, path: Path, fps: float, fourcc: str | None = None):
        self.path, self.fps = path, fps
        self.fourcc = fourcc or VIDEO_FOURCC.get(path.suffix.lower())
        if not self.fourcc:
            raise UserError(
                f"--output {path}: unknown video type {path.suffix!r}; use .mp4 (mp4v), .avi (MJPG) or .mkv (FFV1), "
                "an image file, or a folder"
            )
        if len(self.fourcc) != 4:
            raise UserError(f"--fourcc {self.fourcc}: expected four characters, e.g. mp4v, MJPG, FFV1")
        if not path.parent.is_dir():
            raise UserError(f"--output {path}: folder {path.parent} does not exist")
        self.tmp = _partial(path)
        self.writer = None
        self.size = None
        self.count = 0

    def write(self, image: np.ndarray, name: str) -> None:
        image = as_bgr(image)
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            code = cv2.VideoWriter_fourcc(*self.fourcc)
            self.writer = cv2.VideoWriter(str(self.tmp), code, self.fps, self.size)
            if not self.writer.isOpened():
                self.writer = None
                self.tmp.unlink(missing_ok=True)
                raise UserError(
                    f"--output {self.path}: OpenCV cannot write {self.path.suffix} with codec {self.fourcc} here; "
                    "try .mp4 (mp4v) or .avi (MJPG)"
                )
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.count += 1

    def close(self, ok: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if ok and self.count:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class ImageSink(Sink):
    """One image file (for one-image sources) or a folder of PNGs named after the source frames."""

    def __init__(self, path: Path, single: bool):
        self.path, self.single = path, single
        self.count = 0
        if single:
            if not path.parent.is_dir():
                raise UserError(f"--output {path}: folder {path.parent} does not exist")
        else:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"--output {path}: cannot create the folder ({error.strerror})") from None

    def write(self, image: np.ndarray, name: str) -> None:
        target = self.path if self.single else self.path / f"{name}.png"
        if self.single and self.count:
            raise UserError(f"--output {self.path} is one image but the source has several frames; pass a folder")
        if image.ndim == 3 and image.shape[2] == 4 and target.suffix.lower() not in ALPHA_SUFFIXES:
            image = as_bgr(image)  # a JPEG has no alpha: write the matte
        tmp = _partial(target)
        if not cv2.imwrite(str(tmp), image):
            tmp.unlink(missing_ok=True)
            raise UserError(f"--output {target}: OpenCV could not write this image")
        os.replace(tmp, target)
        self.count += 1


def open_sink(output: str | Path, fps: float, single_image_source: bool, fourcc: str | None = None) -> Sink:
    """--output: a video (.mp4/.avi/.mkv/...), an image file (one-image sources), or a folder."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if not single_image_source:
            raise UserError(f"--output {path}: one image file, but the source has several frames; pass a folder")
        return ImageSink(path, single=True)
    if path.is_dir() or not suffix:
        return ImageSink(path, single=False)
    return VideoSink(path, fps, fourcc)


class Window(Sink):
    """An OpenCV window; Esc or q (or closing it) asks to stop."""

    def __init__(self, title: str = "person segmentation (Esc or q quits)"):
        self.title = title
        self.quit = self.shown = False
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as error:
            raise DisplayUnavailable(_gui_error(error)) from None

    def write(self, image: np.ndarray, name: str) -> None:
        try:
            cv2.imshow(self.title, as_bgr(image))
            key = cv2.waitKey(1) & 0xFF
            visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error as error:
            raise DisplayUnavailable(_gui_error(error)) from None
        # closed by its title bar: seen visible before, not now (some GUI backends never report it)
        closed = self.shown and not visible
        self.shown = self.shown or visible
        self.quit = self.quit or key in (27, ord("q"), ord("Q")) or closed

    def close(self, ok: bool = True) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


def _gui_error(error: cv2.error) -> str:
    text = str(error)
    if "not implemented" in text:
        return "this OpenCV build has no GUI (opencv-python-headless)"
    return text.strip().splitlines()[-1][-160:]


VIRTUAL_CAM_HELP = (
    "--virtual-cam needs the pyvirtualcam package (pip install pyvirtualcam) and a virtual camera device: "
    "OBS Virtual Camera (Windows, macOS: install OBS and start its virtual camera once) or v4l2loopback on Linux "
    "(sudo modprobe v4l2loopback devices=1 exclusive_caps=1)"
)


class VirtualCam(Sink):
    """Frames to a virtual camera through pyvirtualcam (optional dependency, imported only here)."""

    def __init__(self, fps: float):
        try:
            import pyvirtualcam
        except ImportError:
            raise UserError(VIRTUAL_CAM_HELP) from None
        self.module, self.fps, self.cam = pyvirtualcam, fps, None

    def write(self, image: np.ndarray, name: str) -> None:
        image = as_bgr(image)
        if self.cam is None:
            height, width = image.shape[:2]
            try:
                self.cam = self.module.Camera(width, height, self.fps, fmt=self.module.PixelFormat.BGR)
            except Exception as error:  # noqa: BLE001 - pyvirtualcam raises RuntimeError for a missing device
                raise UserError(f"{VIRTUAL_CAM_HELP}. pyvirtualcam said: {str(error)[:200]}") from None
            print(f"virtual camera: {self.cam.device} ({width}x{height})", file=sys.stderr)
        self.cam.send(np.ascontiguousarray(image))

    def close(self, ok: bool = True) -> None:
        if self.cam is not None:
            self.cam.close()
            self.cam = None
