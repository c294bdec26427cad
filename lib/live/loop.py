"""The live loop behind webcam.py: read, segment, steady the mask, composite, show or write.

Three stages overlap when `pipeline` is on: a thread decodes the next frame and another encodes
the previous one while the main thread runs the model (OpenCV and ONNX Runtime release the GIL).
The window stays on the main thread (GUI toolkits insist). A live source keeps only its newest
frame, so a slow model drops frames instead of falling behind the camera.
"""

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from lib import ROOT
from lib.live.compose import MODES, Compositor, TemporalSmoother
from lib.live.errors import UserError
from lib.live.options import BLUR_RANGE, Options, validate
from lib.live.preprocess import Preprocess, with_boxes
from lib.live.report import log, no_display, one_image, report, total_frames
from lib.live.segmenter import Segmenter, load_segmenter
from lib.live.sinks import DisplayUnavailable, Sink, VirtualCam, open_sink
from lib.live.sources import Background, Source, SourceLost, open_source
from lib.live.stats import Progress, Stats
from lib.live.stop import StopSignals
from lib.live.stream import Prefetch, Writer, timed_frames
from lib.live.window import Display

DEFAULT_MODEL = ROOT / "models" / "lite_int8.onnx"  # the shipped model, int8 (models/README.md)


def resolve_model(ckpt: str | None) -> Path:
    if ckpt:
        if ckpt.lower().endswith(".onnx") and not _utf8(ckpt):  # ONNX Runtime takes only UTF-8 names
            raise UserError(f"--ckpt {ckpt}: the file name is not valid UTF-8 (ONNX Runtime cannot open it); rename it")
        return Path(ckpt)
    if not DEFAULT_MODEL.is_file():
        raise UserError(
            f"no default model: {os.path.relpath(DEFAULT_MODEL)} is missing (it ships in the repository's models/; "
            "restore it with git checkout models/), or pass --ckpt experiments/expN/weights/best.pt (or a .ts/.onnx)"
        )
    return DEFAULT_MODEL


def model_view(frame: np.ndarray, prep: Preprocess) -> np.ndarray:
    """The frame scaled to fit the model's input box (what letterbox would make of it), so the
    probability comes back at this small size and compositing scales the matte up once."""
    h, w = frame.shape[:2]
    new_h, new_w = prep.fit_size(h, w)
    if (new_h, new_w) == (h, w):
        return frame
    return cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA if new_h < h else cv2.INTER_LINEAR)


class ChangeGate:
    """Whether the model must see this frame: only when the picture changed since the model last
    saw one, and at least every max_skip + 1 frames (a slow drift adds up, a late change is caught).

    The change is the mean absolute difference of 40x30 grey thumbnails, in grey levels (0-255):
    sensor noise averages out at that size, a moving person does not. About 0.2 ms a 640x480 frame.
    """

    def __init__(self, threshold: float, max_skip: int = 5):
        self.threshold, self.max_skip = threshold, max_skip
        self.seen: np.ndarray | None = None  # the thumbnail of the frame the model last saw
        self.skipped = 0

    def __call__(self, frame: np.ndarray) -> bool:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        thumb = cv2.resize(grey, (40, 30), interpolation=cv2.INTER_AREA).astype(np.float32)
        if (
            self.seen is None
            or self.skipped >= self.max_skip
            or cv2.norm(thumb, self.seen, cv2.NORM_L1) / thumb.size > self.threshold
        ):
            self.seen, self.skipped = thumb, 0
            return True
        self.skipped += 1
        return False


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as surrogates
        return False


def _open_display(opts: Options, others: bool) -> Display | None:
    try:
        return Display()
    except DisplayUnavailable as error:
        no_display(opts, others, str(error))
        return None


def run(
    opts: Options, segmenter: Segmenter | None = None, source: Source | None = None, sinks: list[Sink] = ()
) -> Stats:
    """Run until the source ends, Esc/q, Ctrl-C, SIGTERM, SIGHUP or max_frames; print the stats line and
    return them.

    segmenter/source: pass your own (tests, other programs); by default from opts.ckpt/opts.source.
    sinks: more places for the output frames, besides opts.output and the virtual camera.
    An error removes the half-written output; a stop (Esc, a signal, camera lost) finishes it.
    """
    validate(opts, bool(sinks))
    if opts.output and Path(opts.output).resolve() == Path(opts.source).resolve():
        raise UserError(f"--output {opts.output} is the --source itself; write somewhere else")
    model_path = resolve_model(opts.ckpt) if segmenter is None else None
    source = source or open_source(opts.source, opts.camera_size, opts.camera_fps)
    background = writer = display = reader = None
    stats, ok, progress = Stats(), False, Progress(None, on=False)
    with StopSignals() as stop:
        try:
            background = Background(opts.background) if opts.mode == "replace" else None
            sinks = list(sinks)
            if opts.output:
                one = one_image(source)
                audio = getattr(source, "audio_path", None)  # a video file's sound goes into the output video
                sinks.append(open_sink(opts.output, source.fps, one, opts.fourcc, audio, opts.overwrite))
            if opts.virtual_cam:
                sinks.append(VirtualCam(source.fps))
            display = _open_display(opts, bool(sinks)) if opts.display else None
            if segmenter is None:
                # several frames in the model at once share the cores rather than oversubscribe them
                threads = opts.threads or (max(1, (os.cpu_count() or 1) // opts.workers) if opts.workers > 1 else None)
                # reader and writer threads share the cores: ONNX Runtime's idle threads must not spin
                segmenter = load_segmenter(model_path, opts.backend, opts.device, threads, spin=not opts.pipeline)
            if opts.input_size or opts.landscape_size:  # a smaller box is faster, a larger one finds smaller people
                segmenter.prep = with_boxes(segmenter.prep, opts.input_size, opts.landscape_size)
            writer = Writer(sinks, threaded=opts.pipeline)
            reader = Prefetch(source) if opts.pipeline else None
            # a file shown in a window plays at its own frame rate; a live source sets its own pace
            pace = source.fps if display is not None and not source.live else None
            if display is None and not source.live and not one_image(source):  # how far a long file run is
                progress = Progress(total_frames(source, opts.max_frames))
            loop = LiveLoop(opts, segmenter, background, writer, display, stats, pace, stop, progress)
            loop.run(reader or timed_frames(source))
            if loop.display is not None and one_image(source):
                loop.hold()
            ok = True
        except KeyboardInterrupt as error:
            ok = True  # Ctrl-C, SIGTERM, SIGHUP: how a headless recording is stopped; finish the file
            progress.close()
            log(f"stopped ({getattr(error, 'why', 'Ctrl-C')})")
        except SourceLost as error:
            ok = True  # keep what was recorded before the camera went away
            error.stats = stats
            raise
        finally:
            stop.finishing()  # a second signal must not cut the output short
            progress.close()
            if reader is not None:
                reader.close()
                stats.dropped = reader.dropped
            source.close()
            for part in (background, display):
                if part is not None:
                    part.close()
            if writer is not None:
                writer.close(ok)
            if ok:
                report(opts, stats)
    return stats


class LiveLoop:
    """Frames in order through the model, the smoother and the compositor, out to the sinks.

    With workers > 1 the model runs on several frames at once (one ORT thread each works better
    on a 2-core CPU than one run with two threads); results are taken in order.
    """

    def __init__(
        self, opts: Options, seg: Segmenter, background, writer: Writer, display: Display | None, stats,
        pace: float | None = None, stop: StopSignals | None = None, progress: Progress | None = None,
    ):  # fmt: skip
        self.opts, self.seg, self.background, self.writer, self.display, self.stats = (
            opts, seg, background, writer, display, stats,
        )  # fmt: skip
        self.pace, self.shown, self.t0 = pace, 0, 0.0  # frames per second to show a file at
        self.show_stats = opts.show_stats
        self.last = None  # the last frame and backdrop: a photo is composited again when a key changes it
        self.compositor = Compositor(opts.mode, opts.blur_strength, opts.feather, refine=opts.refine)
        self.gate = ChangeGate(opts.change_threshold, opts.max_skip) if opts.change_threshold > 0 else None
        self.smoother = TemporalSmoother(opts.momentum if opts.smooth else 0.0)
        self.pool = ThreadPoolExecutor(opts.workers, thread_name_prefix="model") if opts.workers > 1 else None
        self.prob = None  # the last smoothed probability, kept for frames the model skips
        self.lost: list[SourceLost] = []
        self.stop = stop or StopSignals()  # not entered: holds nothing
        self.progress = progress or Progress(None, on=False)

    def run(self, frames) -> None:
        pending: deque = deque()
        try:
            for index, frame in enumerate(self._until_lost(frames)):
                if self.opts.max_frames and index >= self.opts.max_frames:
                    break
                run_model = self.gate(frame.image) if self.gate else index % self.opts.every == 0
                pending.append(self._start(frame, run_model))
                if len(pending) >= self.opts.workers and self._finish(*pending.popleft()):
                    return
            while pending:
                if self._finish(*pending.popleft()):
                    break
            if self.lost:
                raise self.lost[0]
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)

    def _until_lost(self, frames):
        try:
            yield from frames
        except SourceLost as error:
            self.lost.append(error)  # finish the frames already in the model, then say so

    def _timed(self, small: np.ndarray) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        return self.seg(small), time.perf_counter() - start

    def _start(self, frame, run_model: bool) -> tuple:
        """(frame, model job or None, seconds spent here besides the model)."""
        if not run_model:
            return frame, None, 0.0
        start = time.perf_counter()
        small = model_view(frame.image, self.seg.prep)
        if self.pool is not None:
            return frame, self.pool.submit(self._timed, small), time.perf_counter() - start
        job = self._timed(small)
        return frame, job, time.perf_counter() - start - job[1]

    def _finish(self, frame, job, pre_s: float) -> bool:
        """Composite and write one frame; True when the window asks to quit."""
        model_s = None
        if job is not None:
            raw, model_s = job.result() if self.pool else job  # waiting here is not a cost of this frame
        start = time.perf_counter()
        if job is not None:
            self.prob = self.smoother(raw)
        image = frame.image
        backdrop = self.background.next(image.shape[:2]) if self.background is not None else None
        out = self.compositor(image, self.prob, backdrop)
        self.last = (image, backdrop)
        with self.stop.held():  # a signal waits until the frame is written and counted
            self.writer.write(out, frame.name)
            waited = 0.0
            if self.display is not None:
                waited = self._show(out, frame.name)
            # the cost of every stage of this frame; stages overlap, so fps may beat 1000 / total_ms
            post_s = time.perf_counter() - start - waited  # waiting for a file's next frame time is no work
            self.stats.add(frame.read_s + pre_s + (model_s or 0.0) + post_s + self.writer.write_s, model_s)
            self.progress.update(self.stats.frames, self.stats.fps)
        return self.display is not None and self.display.quit

    def hold(self) -> None:
        """A photo stays on the screen until the user quits; the keys still change what it shows."""
        while self.display is not None and not self.display.quit and self.last is not None:
            self.display.poll()
            commands = self.display.commands()
            for command in commands:
                self._command(command)
            if commands:
                out = self.compositor(self.last[0], self.prob, self.last[1])
                self.display.write(self.stats.draw(out) if self.show_stats else out, "photo")
            time.sleep(0.03)

    def _show(self, out: np.ndarray, name: str) -> float:
        """Show one frame (at its time, for a file); the seconds spent waiting for that time."""
        wait = 0.0
        if self.pace and self.shown:  # a video file at its own speed: wait for this frame's moment
            wait = max(0.0, self.t0 + self.shown / self.pace - time.perf_counter())
            time.sleep(wait)
        try:
            self.display.write(self.stats.draw(out) if self.show_stats else out, name)
        except DisplayUnavailable as error:
            no_display(self.opts, bool(self.writer.sinks), str(error))
            self.display = None
            return wait
        if not self.shown:  # the clock starts once the first frame is up (opening the window takes a while)
            self.t0 = time.perf_counter()
        self.shown += 1
        for command in self.display.commands():
            self._command(command)
        return wait

    def _command(self, command: str) -> None:
        """A key pressed in the window (lib.live.window.KEYS): change the live settings, say so on stderr."""
        comp = self.compositor
        if command == "mode":
            modes = [m for m in MODES if m != "replace" or self.background is not None]
            comp.mode = modes[(modes.index(comp.mode) + 1) % len(modes)]
        elif command in ("stronger", "weaker"):
            factor = 1.25 if command == "stronger" else 1 / 1.25
            comp.blur_strength = min(BLUR_RANGE[1], max(BLUR_RANGE[0], comp.blur_strength * factor))
        elif command == "smooth":
            self.smoother.momentum = 0.0 if self.smoother.momentum else (self.opts.momentum or 0.8)
            self.smoother.reset()
        elif command == "stats":
            self.show_stats = not self.show_stats
        smoothing = "on" if self.smoother.momentum else "off"
        log(f"key: mode {comp.mode}, blur strength {comp.blur_strength:.2f}, smoothing {smoothing}")
