"""Where frames go: a video file, image files, a virtual camera (the window is lib.live.window).

All or nothing: a video, an image or a folder of images is written under a hidden temporary name
beside the target and renamed when complete. A run that fails, or a write that fails (a full
disk, a read-only folder, a writer that stops taking frames), removes what it started, keeps
what was there before, and says which path and why in one line. An existing --output is
replaced only with --overwrite; the folder is checked for writing before any model is loaded.
An --output that appears while the run writes (a second run writing the same new file) is not
replaced: the result is kept beside it (lib.live.files.publish). A device or pipe is refused: it
cannot hold a video's or a folder's files, and renaming one over it would destroy it.
"""

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from lib.live import video_out
from lib.live.errors import UserError
from lib.live.files import cause, check_writable, opencv_name, publish, special, temp_sibling
from lib.live.preprocess import IMAGE_SUFFIXES, letterbox

ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff")  # image formats that keep an alpha channel
VIDEO_SUFFIXES = tuple(video_out.CODECS)
OPENCV_CODECS = ("mp4v", "MJPG", "FFV1", "XVID")  # the codecs the headless OpenCV writes (measured)
OPENCV_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}


class DisplayUnavailable(Exception):
    """No window can be opened: no screen, or no GUI library (lib.live.window)."""


def as_bgr(image: np.ndarray) -> np.ndarray:
    """What a 3-channel sink shows of a BGRA frame (alpha mode): the matte itself, as grey."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image[..., 3]), cv2.COLOR_GRAY2BGR)
    return image


def _failed(path: Path, error: Exception, kept: bool) -> UserError:
    before = "; the earlier file was kept" if kept else ""
    return UserError(f"--output {path}: {cause(error)}; nothing was written{before}")


class Sink:
    def write(self, image: np.ndarray, name: str) -> None:
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        """ok=False: the run failed; leave nothing half-written behind."""


def fit_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit (width, height) with its aspect kept, centred on black: a portrait
    photo in a landscape video keeps its shape (bars at the sides), as a player shows it."""
    height, width = image.shape[:2]
    larger = size[0] > width and size[1] > height
    fitted, _ = letterbox(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR if larger else cv2.INTER_AREA)
    return fitted


class VideoSink(Sink):
    """A video file: PyAV (H.264, the source's sound) or, with a fourcc, OpenCV; a frame of another
    size than the first (a folder of mixed photos) is scaled to fit it, aspect kept, black bars."""

    def __init__(
        self, path: Path, fps: float, fourcc: str | None = None, audio_from: str | None = None,
        overwrite: bool = False,
    ):  # fmt: skip
        self.path, self.fps, self.fourcc, self.audio_from, self.overwrite = path, fps, fourcc, audio_from, overwrite
        self.fitted = 0  # frames of another size, fitted with bars (said once)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise UserError(
                f"--output {path}: unknown video type {path.suffix!r}; use .mp4 or .mov (H.264), .mkv (lossless), "
                ".avi (MJPEG), an image file, or a folder"
            )
        if fourcc is not None and fourcc not in OPENCV_CODECS:
            raise UserError(
                f"--fourcc {fourcc}: this OpenCV writes {', '.join(OPENCV_CODECS)}; leave --fourcc out for H.264 "
                "with the source's sound"
            )
        if fourcc is None and not video_out.available():
            video_out.note("PyAV is not installed (pip install av): writing mp4v with OpenCV, without sound")
            self.fourcc = OPENCV_FOURCC[path.suffix.lower()]
        self.tmp = temp_sibling(path)  # the container is chosen from the suffix
        self.writer = self.size = None
        self.count = 0

    def _open(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        if min(width, height) < video_out.MIN_SIDE:
            raise video_out.too_small(self.path, width, height)
        self.size = (width, height)
        if self.fourcc is None:
            self.writer = video_out.AvWriter(self.path, self.tmp, self.fps, self.size, self.audio_from)
            return
        # a full disk makes OpenCV warn once per frame; the frame count checked at the end says it in one line
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        with opencv_name(self.tmp) as name, _quiet_fd2():
            self.writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
        if not self.writer.isOpened():
            self.writer = None
            self.tmp.unlink(missing_ok=True)
            raise UserError(
                f"--output {self.path}: OpenCV cannot write {self.path.suffix} with codec {self.fourcc}; "
                "leave out --fourcc (H.264 through PyAV), or try mp4v for .mp4 and MJPG for .avi"
            )

    def write(self, image: np.ndarray, name: str) -> None:
        image = as_bgr(image)
        try:
            if self.writer is None:
                self._open(image)
            if (image.shape[1], image.shape[0]) != self.size:
                if not self.fitted:
                    video_out.note(
                        f"{name} is {image.shape[1]}x{image.shape[0]}, the video {self.size[0]}x{self.size[1]} "
                        "(its first frame's size): frames of other sizes are scaled to fit, with black bars"
                    )
                self.fitted += 1
                image = fit_frame(image, self.size)
            self.writer.write(image)
        except (OSError, *video_out.errors()) as error:
            raise _failed(self.path, error, self.path.exists()) from None
        self.count += 1

    def close(self, ok: bool = True) -> None:
        try:
            self._finish(ok)
            if ok and self.count:
                publish(self.tmp, self.path, self.overwrite)
                return
        except (OSError, *video_out.errors()) as error:
            self.tmp.unlink(missing_ok=True)
            raise _failed(self.path, error, self.path.exists()) from None
        self.tmp.unlink(missing_ok=True)

    def _finish(self, ok: bool) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        if isinstance(writer, video_out.AvWriter):
            writer.finish() if ok else writer.close()
            return
        writer.release()
        if ok and self.count:  # OpenCV's writer drops frames silently when the disk is full: count them
            got = _frames_in(self.tmp)
            if got < self.count:
                raise OSError(f"only {got} of {self.count} frames reached the file (disk full?)")


@contextmanager
def _quiet_fd2():
    """OpenCV's FFmpeg backend prints its codec notes ("tag ... is not supported, fallback to ...")
    straight to file descriptor 2, past Python; for the moment a writer opens, they go nowhere."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _frames_in(path: Path) -> int:
    with opencv_name(path) as name:
        cap = cv2.VideoCapture(name)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return count


class ImageSink(Sink):
    """One image file (for one-image sources) or a folder of PNGs named after the source frames.
    A folder is filled under a temporary name beside it and moved in when the run is complete."""

    def __init__(self, path: Path, single: bool, overwrite: bool = False):
        self.path, self.single, self.overwrite = path, single, overwrite
        self.count = 0
        self.folder = path.parent if single else temp_sibling(path)
        if not single:
            try:
                self.folder.mkdir()
            except OSError as error:
                raise UserError(f"--output {path}: cannot create the folder ({cause(error)})") from None

    def write(self, image: np.ndarray, name: str) -> None:
        if self.single and self.count:
            raise UserError(f"--output {self.path} is one image but the source has several frames; pass a folder")
        target = self.path if self.single else self.folder / f"{name}.png"
        if image.ndim == 3 and image.shape[2] == 4 and target.suffix.lower() not in ALPHA_SUFFIXES:
            image = as_bgr(image)  # a JPEG has no alpha: write the matte
        ok, data = cv2.imencode(target.suffix, image)
        if not ok:
            raise UserError(f"--output {target}: OpenCV cannot encode a {image.shape[1]}x{image.shape[0]} image")
        tmp = temp_sibling(target) if self.single else target
        try:
            tmp.write_bytes(data.tobytes())
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise _failed(self.path, error, self.path.exists() and self.single) from None
        if self.single:
            publish(tmp, target, self.overwrite)
        self.count += 1

    def close(self, ok: bool = True) -> None:
        if self.single:
            return
        if not ok or not self.count:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        if not (self.overwrite and self.path.is_dir()):
            publish(self.folder, self.path, overwrite=False)  # a folder that appeared meanwhile is not merged into
            return
        for file in self.folder.iterdir():  # --overwrite of an existing folder: the new files move in
            os.replace(file, self.path / file.name)
        self.folder.rmdir()


def open_sink(
    output: str | Path, fps: float, single_image_source: bool, fourcc: str | None = None,
    audio_from: str | None = None, overwrite: bool = False,
) -> Sink:  # fmt: skip
    """--output: a video (.mp4/.mov/.mkv/.avi), an image file (one-image sources), or a folder."""
    path = Path(output)
    suffix = path.suffix.lower()
    kind = special(path)
    if kind is not None:
        raise UserError(
            f"--output {path}: {kind}, not a file; --output writes a video, an image or a folder of images "
            "as files (to run without saving frames, leave --output out and pass --benchmark)"
        )
    if not path.parent.is_dir():  # like a file's folder, a new folder's parent must exist: no tree of typos
        raise UserError(f"--output {path}: folder {path.parent} does not exist")
    folder_out = path.is_dir() or not suffix
    if folder_out and path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserError(
            f"--output {path}: the folder has files in it; pass --overwrite to add to it (files of the same "
            "names are replaced when the run is complete), or name a new folder"
        )
    if not folder_out and path.exists() and not overwrite:
        raise UserError(f"--output {path} exists; pass --overwrite to replace it (kept until the new one is complete)")
    check_writable(path.parent, "--output", named=path)
    if folder_out and path.is_dir():
        check_writable(path, "--output")
    if suffix in IMAGE_SUFFIXES and not folder_out:
        if not single_image_source:
            raise UserError(f"--output {path}: one image file, but the source has several frames; pass a folder")
        return ImageSink(path, single=True, overwrite=overwrite)
    if folder_out:
        return ImageSink(path, single=False, overwrite=overwrite)
    return VideoSink(path, fps, fourcc, audio_from, overwrite)


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
