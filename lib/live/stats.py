"""The live loop's numbers: FPS, model ms and total ms per frame, as a summary line and on screen."""

import os
import sys
import time

import cv2
import numpy as np

from lib.live.sinks import as_bgr


class Stats:
    """FPS, model ms and total ms per frame; the first frame (warm-up) is left out of the means."""

    def __init__(self):
        self.frames = self.model_runs = self.dropped = 0
        self.model_s = self.total_s = 0.0
        self.t_first = self.t_last = None
        self.fps_now = 0.0
        self.last_model_ms = self.last_total_ms = 0.0

    def add(self, total_s: float, model_s: float | None) -> None:
        now = time.perf_counter()
        self.frames += 1
        if self.t_last is not None:
            instant = 1.0 / max(now - self.t_last, 1e-6)
            self.fps_now = 0.9 * self.fps_now + 0.1 * instant if self.fps_now else instant
        if self.frames == 1:
            self.t_first, self.first = now, (total_s, model_s)
        else:
            self.total_s += total_s
            if model_s is not None:
                self.model_runs += 1
                self.model_s += model_s
        self.t_last = now
        self.last_total_ms = total_s * 1000
        if model_s is not None:
            self.last_model_ms = model_s * 1000

    @property
    def fps(self) -> float:
        span = (self.t_last or 0) - (self.t_first or 0)
        return (self.frames - 1) / span if self.frames > 1 and span > 0 else 0.0

    def summary(self) -> str:
        if self.frames == 1:  # one picture: its own times, warm-up and all
            total_ms, model_ms = 1000 * self.first[0], 1000 * (self.first[1] or 0.0)
        else:
            model_ms = 1000 * self.model_s / self.model_runs if self.model_runs else 0.0
            total_ms = 1000 * self.total_s / (self.frames - 1) if self.frames > 1 else 0.0
        return f"frames={self.frames} fps={self.fps:.1f} model_ms={model_ms:.1f} total_ms={total_ms:.1f}"

    def draw(self, image: np.ndarray) -> np.ndarray:
        text = f"{self.fps_now:4.1f} FPS  model {self.last_model_ms:4.1f} ms  total {self.last_total_ms:4.1f} ms"
        image = as_bgr(image).copy()
        # white text on a dark box: readable on any frame, also a white wall (an outline drawn with
        # another thickness shifts the glyphs' spacing, and on light frames the two did not line up)
        (width, height), below = cv2.getTextSize(text, FONT, SCALE, 1)
        x, y, pad = 8, 20, 4
        box = image[max(0, y - height - pad) : y + below + pad, max(0, x - pad) : x + width + pad]
        box[:] = box // 4  # darkened, not hidden: the frame still shows through a little
        cv2.putText(image, text, (x, y), FONT, SCALE, (255, 255, 255), 1, cv2.LINE_AA)
        return image


FONT, SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.5


class Progress:
    """A one-line progress bar on stderr for a file run without a window: frames done of the total,
    FPS and the time left, redrawn at most 4 times a second. Only on a terminal: in a pipe or a log
    file it writes nothing (no carriage-return clutter). Small on purpose: the live install has no tqdm."""

    def __init__(self, total: int | None, stream=None, on: bool | None = None, every_s: float = 0.25):
        self.stream = stream or sys.stderr
        self.total, self.every_s = total, every_s
        self.on = _is_terminal(self.stream) if on is None else on
        self.last, self.width = 0.0, 0

    def update(self, done: int, fps: float) -> None:
        now = time.monotonic()
        if not self.on or (now - self.last < self.every_s and done != self.total):
            return
        self.last = now
        self._write("\r" + self.line(done, fps)[: _columns(self.stream) - 1])  # one line: no wrap

    def line(self, done: int, fps: float) -> str:
        speed = f"{fps:5.1f} fps" if fps > 0 else "  ... fps"
        if not self.total:
            return f"{done} frames  {speed}"
        share = min(1.0, done / self.total)
        bar = "#" * round(24 * share) + "." * (24 - round(24 * share))
        left = f"{_clock((self.total - done) / fps)} left" if fps > 0 else "--:-- left"
        return f"{done:>{len(str(self.total))}}/{self.total} frames [{bar}] {100 * share:3.0f}%  {speed}  {left}"

    def close(self) -> None:
        """Clear the bar, so the next line (done: ...) starts at the left edge."""
        if self.on and self.width:
            self._write("\r" + " " * self.width + "\r")
        self.on = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
            self.width = max(self.width, len(text) - 1)
        except (OSError, ValueError):  # the terminal is gone (SIGHUP): the run goes on without the bar
            self.on = False


def _columns(stream) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80  # 0: a terminal that never set its size
    except (AttributeError, OSError, ValueError):
        return 80


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
