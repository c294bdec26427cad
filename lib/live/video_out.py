"""Video files written with PyAV (FFmpeg in its wheels, on Linux, macOS and Windows): H.264 where
that FFmpeg has an encoder for it, and the source video's sound tracks and subtitles copied packet
by packet (every one the container takes; one note names those it cannot).

The headless OpenCV the training stack pins cannot write H.264 and drops the sound; PyAV does
both in-process (measured: libx264 and the aac/mp3 muxers are in its wheels). The file is written
under a hidden name and renamed when complete (lib.live.sinks.VideoSink's contract).
"""

import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from lib.live.errors import UserError

try:
    import av
except ImportError:  # writing falls back to OpenCV (no H.264, no sound), with a note
    av = None

# suffix -> (encoder, pixel format); .mkv stays lossless as before (FFV1), the rest H.264
CODECS = {
    ".mp4": ("libx264", "yuv420p"),
    ".m4v": ("libx264", "yuv420p"),
    ".mov": ("libx264", "yuv420p"),
    ".mkv": ("ffv1", "bgr0"),
    ".avi": ("mjpeg", "yuvj420p"),
}
# audio codecs each container takes as they are (copied, not re-encoded); .mkv takes any
COPIES = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
    ".avi": {"mp3", "ac3", "pcm_s16le", "aac"},
}
# subtitle codecs each container takes as they are; .mkv takes any, .avi none
SUBTITLES = {".mp4": {"mov_text"}, ".m4v": {"mov_text"}, ".mov": {"mov_text"}, ".avi": set()}
MIN_SIDE = 16  # smaller frames make no sensible video (H.264 works on 16x16 blocks)


def available() -> bool:
    return av is not None


def errors() -> tuple[type[Exception], ...]:
    """What a failed write raises besides OSError (FFmpeg's errors through PyAV)."""
    return (av.FFmpegError,) if av is not None else ()


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def too_small(path: Path, width: int, height: int) -> UserError:
    return UserError(
        f"--output {path}: the frames are {width}x{height} pixels, too small for a video "
        f"(at least {MIN_SIDE}x{MIN_SIDE}); write them as images instead: --output FOLDER/"
    )


class AvWriter:
    """One video file: frames in, the source's audio interleaved by time, closed or removed."""

    def __init__(self, path: Path, tmp: Path, fps: float, size: tuple[int, int], audio_from: str | None):
        self.path, self.tmp, self.count = path, tmp, 0
        self.rate = Fraction(fps).limit_denominator(1001)
        codec, self.pix_fmt = CODECS[path.suffix.lower()]
        if codec not in av.codecs_available:  # a PyAV built without the encoder: say so, use MPEG-4
            note(f"this FFmpeg has no {codec} encoder; writing {path.name} as MPEG-4 part 2")
            codec, self.pix_fmt = "mpeg4", "yuv420p"
        even = self.pix_fmt.startswith("yuv")  # 4:2:0 needs even sides: the last row/column is repeated
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2) if even else size
        self.container = av.open(str(tmp), "w", format=_format(path))
        self.video = self.container.add_stream(codec, rate=self.rate)
        self.video.width, self.video.height = self.size
        self.video.pix_fmt = self.pix_fmt
        if codec == "libx264":  # good quality at a fraction of the default preset's CPU
            self.video.options = {"crf": "20", "preset": "veryfast"}
        self.audio_in = self.packets = self.pending = None  # pending: a packet read ahead of the video
        self.copies: dict[int, tuple] = {}  # source stream index -> (output stream, what it is)
        if audio_from:
            self._open_tracks(audio_from)

    def _open_tracks(self, source: str) -> None:
        """Every sound and subtitle track of the source that the container takes, as it is."""
        try:
            self.audio_in = av.open(source)
        except av.FFmpegError:
            return  # OpenCV decodes it but FFmpeg's demuxer cannot: no sound to keep
        suffix, sounds, dropped = self.path.suffix.lower(), len(self.audio_in.streams.audio), []
        for stream in self.audio_in.streams:
            if stream.type not in ("audio", "subtitle"):
                continue
            name = stream.codec.canonical_name  # mp3, not the decoder's mp3float
            if stream.type == "subtitle":
                what, takes = f"subtitles ({name})", SUBTITLES.get(suffix)
            else:
                number = f" track {list(self.audio_in.streams.audio).index(stream) + 1}" if sounds > 1 else ""
                what, takes = f"sound{number} ({name})", COPIES.get(suffix)
            if takes is None or name in takes:
                try:
                    self.copies[stream.index] = (self.container.add_stream_from_template(stream), what)
                    continue
                except (ValueError, av.FFmpegError):
                    pass  # the muxer refuses this codec after all
            dropped.append(what)
        if dropped:
            them = "it" if len(dropped) == 1 and not dropped[0].startswith("subtitles") else "them"
            note(
                f"the source's {' and '.join(dropped)} cannot be copied into {suffix}; writing without {them} "
                f"(.mkv keeps {them})"
            )
        if not self.copies:
            self.audio_in.close()
            self.audio_in = None
            return
        self.packets = self.audio_in.demux([self.audio_in.streams[index] for index in self.copies])

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = _pad(image, self.size)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.count
        frame.time_base = 1 / self.rate
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.count += 1
        self._audio_until(self.count / self.rate)

    def _audio_until(self, seconds) -> None:
        """Copy sound and subtitles up to the video's time so far, so they stay interleaved in the file."""
        while self.packets is not None:
            try:
                packet = self.pending or next(self.packets, None)
            except av.FFmpegError as error:  # damaged sound: keep the video, say where the sound stops
                note(f"the source's sound could not be read past {float(seconds):.1f} s ({error}); the rest is silent")
                self.packets = None
                return
            self.pending = None
            if packet is None:
                self.packets = None
                return
            if packet.pts is None or packet.stream.index not in self.copies:  # a flush packet, a track given up
                continue
            if packet.pts * packet.time_base >= seconds:
                self.pending = packet
                return
            index = packet.stream.index
            packet.stream, what = self.copies[index]
            try:
                self.container.mux(packet)
            except av.FFmpegError as error:  # odd timestamps in one track: the video and the others go on
                note(f"the source's {what} could not be copied past {float(seconds):.1f} s ({error}); left out after")
                del self.copies[index]

    def finish(self) -> None:
        for packet in self.video.encode(None):
            self.container.mux(packet)
        self.close()

    def close(self) -> None:
        if self.audio_in is not None:
            self.audio_in.close()
            self.audio_in = None
        if self.container is not None:
            container, self.container = self.container, None
            container.close()


def _format(path: Path) -> str:
    return {".mkv": "matroska", ".m4v": "mp4"}.get(path.suffix.lower(), path.suffix.lower().lstrip("."))


def _pad(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    bottom, right = size[1] - image.shape[0], size[0] - image.shape[1]
    if bottom >= 0 and right >= 0 and bottom + right <= 2:
        return cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_REPLICATE)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)  # a frame of another size: scaled
