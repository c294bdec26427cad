"""The live loop's numbers: FPS, model ms and total ms per frame, as a summary line and on screen."""

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
        for color, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(image, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, thick, cv2.LINE_AA)
        return image
