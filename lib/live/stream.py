"""Frames in and out on their own threads, so decoding and encoding overlap the model.

OpenCV and ONNX Runtime release the GIL, so threads are enough. A live source keeps only its
newest frame: a slow model then drops frames instead of falling behind the camera.
"""

import queue
import threading
import time

import numpy as np

from lib.live.sinks import Sink
from lib.live.sources import Source

_END = object()


class Prefetch:
    """Reads frames on a thread; a live source keeps only its newest frame (counting the dropped)."""

    def __init__(self, source: Source):
        self.source, self.live = source, source.live
        self.queue: queue.Queue = queue.Queue(maxsize=1 if self.live else 4)
        self.stop = threading.Event()
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="read", daemon=True)
        self.thread.start()

    def _put(self, item) -> None:
        while not self.stop.is_set():
            if self.live and item is not _END and not isinstance(item, BaseException):
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                start = time.perf_counter()
                frame = self.source.read()
                if frame is None:
                    break
                frame.read_s = time.perf_counter() - start
                self._put(frame)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self._put(error)
            return
        self._put(_END)

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)


def timed_frames(source: Source):
    """The same as Prefetch, without a thread."""
    while True:
        start = time.perf_counter()
        frame = source.read()
        if frame is None:
            return
        frame.read_s = time.perf_counter() - start
        yield frame


class Writer:
    """Hands frames to file and virtual-camera sinks, on a thread when `threaded`."""

    def __init__(self, sinks: list[Sink], threaded: bool):
        self.sinks, self.error, self.write_s = sinks, None, 0.0
        self.queue: queue.Queue | None = None
        if threaded and sinks:
            self.queue = queue.Queue(maxsize=4)
            self.thread = threading.Thread(target=self._run, name="write", daemon=True)
            self.thread.start()

    def _write(self, image: np.ndarray, name: str) -> None:
        start = time.perf_counter()
        for sink in self.sinks:
            sink.write(image, name)
        self.write_s = time.perf_counter() - start

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(*item)
                except BaseException as error:  # noqa: BLE001 - raised again on the main thread
                    self.error = error

    def write(self, image: np.ndarray, name: str) -> None:
        if self.error is not None:
            raise self.error
        if self.queue is None:
            self._write(image, name)
        else:
            self.queue.put((image, name))

    def close(self, ok: bool) -> None:
        """Flush, then finish every sink (ok) or remove what they started (not ok)."""
        if self.queue is not None:
            self.queue.put(None)
            self.thread.join()
            self.queue = None
        ok = ok and self.error is None
        for sink in self.sinks:
            sink.close(ok)
        if self.error is not None:
            raise self.error
