"""Where frames go: a video file, image files, a virtual camera (the window is lib.window).

Sinks never leave a half-written file behind: a video is written under a hidden temporary name
and renamed when it is finished, and deleted when the run fails; each image is written the same way.
"""

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from lib.errors import UserError
from lib.preprocess import IMAGE_SUFFIXES

ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")  # image formats that keep an alpha channel
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}


class DisplayUnavailable(Exception):
    """No window can be opened: no screen, or no GUI library (lib.window)."""


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
        elif not path.is_dir():  # like a file's folder, a new folder's parent must exist: no tree of typos
            if not path.parent.is_dir():
                raise UserError(f"--output {path}: folder {path.parent} does not exist")
            try:
                path.mkdir()
            except OSError as error:
                raise UserError(f"--output {path}: cannot create the folder ({error.strerror})") from None
            print(f"note: created folder {path} for the output images", file=sys.stderr)

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
