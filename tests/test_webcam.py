"""webcam.py, headless: generated videos in every mode and backend, smoothing, and the bad inputs.

The frames are drawn: a bright ellipse (the person) moving over dark noise, saved losslessly
(FFV1), so each test knows where the background is. A segmenter built around a backend that
thresholds brightness returns exactly that person, whatever the weights.
"""

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import bright_segmenter

import lib.live.loop as webcam
from lib.live.errors import UserError
from lib.live.loop import Options, run
from lib.live.segmenter import load_segmenter
from lib.live.sinks import DisplayUnavailable
from lib.live.sources import CaptureSource, SourceLost, open_source

ROOT = Path(__file__).resolve().parents[1]
W, H, N = 160, 120, 12


def draw_frame(i: int, rng) -> tuple[np.ndarray, np.ndarray]:
    frame = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, (60 + 3 * i, 60), (25, 40), 0, 0, 360, 1, -1)
    frame[mask == 1] = (200, 180, 220)
    return frame, mask


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 15, (W, H))
    frames, masks = zip(*(draw_frame(i, rng) for i in range(N)), strict=True)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path, list(frames), list(masks)


def read_video(path: Path) -> list[np.ndarray]:
    cap, frames = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


def regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person core and far background, 6 px away from the edge either way."""
    kernel = np.ones((13, 13), np.uint8)
    return cv2.erode(mask, kernel).astype(bool), cv2.erode(1 - mask, kernel).astype(bool)


def opts(**kw) -> Options:
    return Options(**{"display": False, "benchmark": True, **kw})


@pytest.mark.parametrize("mode", ["blur", "replace", "mask", "alpha"])
def test_modes_on_known_mask(tmp_path, clip, mode):
    path, frames, masks = clip
    background = tmp_path / "bg.png"
    cv2.imwrite(str(background), np.full((23, 37, 3), (255, 0, 0), np.uint8))  # another size: resized
    out = tmp_path / "out.avi"
    kw = {"background": str(background)} if mode == "replace" else {}
    stats = run(opts(source=str(path), mode=mode, output=str(out), fourcc="FFV1", **kw), bright_segmenter())
    result = read_video(out)
    assert stats.frames == N and len(result) == N and result[0].shape == (H, W, 3)
    for frame, mask, got in zip(frames, masks, result, strict=True):
        core, far = regions(mask)
        diff = np.abs(got.astype(int) - frame.astype(int)).mean(axis=2)
        if mode == "alpha":  # a video carries the matte itself
            assert got[core].min() > 250 and got[far].max() < 5
            continue
        if mode == "mask":
            assert diff[core].mean() > 20 and diff[far].mean() < 1
            continue
        assert diff[core].mean() < 2  # the person is kept
        if mode == "blur":
            assert diff[far].mean() > 8  # the noise background is blurred away
        else:
            assert np.abs(got[far].astype(int) - (255, 0, 0)).max() <= 3


def test_alpha_mode_to_image_folder_is_rgba(tmp_path, clip):
    out = tmp_path / "cutouts"
    run(opts(source=str(clip[0]), mode="alpha", output=str(out), max_frames=3), bright_segmenter())
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["000001.png", "000002.png", "000003.png"]
    rgba = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    core, far = regions(clip[2][0])
    assert rgba.shape == (H, W, 4) and rgba[..., 3][core].min() > 250 and rgba[..., 3][far].max() < 5
    assert np.array_equal(rgba[..., :3], clip[1][0])


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    from lib.training.export import export_onnx, export_torchscript
    from lib.training.model import load_checkpoint

    model, info = load_checkpoint(tiny_checkpoint)
    folder = tmp_path_factory.mktemp("exported")
    return {
        "torch": tiny_checkpoint,
        "torchscript": export_torchscript(model, info, folder / "tiny.ts"),
        "onnx": export_onnx(model, info, folder / "tiny.onnx"),
    }


def test_every_backend_gives_the_same_video(tmp_path, clip, exported):
    videos = {}
    for backend, model in exported.items():
        out = tmp_path / f"{backend}.avi"
        stats = run(opts(source=str(clip[0]), ckpt=str(model), output=str(out), fourcc="FFV1", threads=1))
        videos[backend] = np.stack(read_video(out)).astype(int)
        assert stats.frames == N and stats.model_runs == N - 1  # the warm-up frame is left out of the means
        assert videos[backend].shape == (N, H, W, 3)
    assert np.abs(videos["torchscript"] - videos["torch"]).max() <= 2
    assert np.abs(videos["onnx"] - videos["torch"]).max() <= 2


def test_python_api_any_frame_size(exported):
    seg = load_segmenter(exported["onnx"])
    prob = seg(np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8))
    assert prob.shape == (37, 53) and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1


def test_pipeline_matches_sequential_and_every_n(tmp_path, clip):
    videos = []
    for pipeline, workers in ((True, 1), (False, 1), (True, 3)):
        out = tmp_path / f"{pipeline}{workers}.avi"
        kw = {"pipeline": pipeline, "workers": workers, "momentum": 0.8}
        run(opts(source=str(clip[0]), output=str(out), fourcc="FFV1", **kw), bright_segmenter(noise=1.0, scale=1.0))
        videos.append(np.stack(read_video(out)))
    assert np.array_equal(videos[0], videos[1]) and np.array_equal(videos[0], videos[2])  # order kept
    seg = bright_segmenter()
    stats = run(opts(source=str(clip[0]), every=3, max_frames=10), seg)
    assert seg.backend.calls == 4 and stats.frames == 10  # frames 0, 3, 6, 9


def test_smoothing_steadies_a_noisy_mask(tmp_path, clip):
    change = {}
    for smooth in (False, True):
        out = tmp_path / f"{smooth}.avi"
        run(
            opts(source=str(clip[0]), mode="alpha", output=str(out), fourcc="FFV1", smooth=smooth, momentum=0.8),
            bright_segmenter(noise=1.5, scale=1.0),
        )
        mattes = np.stack(read_video(out))[..., 0].astype(float)
        change[smooth] = np.abs(np.diff(mattes, axis=0)).mean()
    assert change[True] < 0.75 * change[False]


def test_image_and_folder_sources(tmp_path, clip):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.jpg"), clip[1][i])
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    run(opts(source=str(folder), output=str(tmp_path / "out")), bright_segmenter())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p2.png"]
    run(opts(source=str(folder / "p1.jpg"), output=str(tmp_path / "one.jpg")), bright_segmenter())
    assert cv2.imread(str(tmp_path / "one.jpg")).shape == (H, W, 3)
    with pytest.raises(UserError, match="one image file"):
        run(opts(source=str(folder), output=str(tmp_path / "x.png")), bright_segmenter())


def test_no_camera_and_unreadable_video(tmp_path):
    with pytest.raises(UserError, match="no camera at index 7"):
        open_source("7")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UserError, match="cannot open it as a video"):
        open_source(str(bad))
    with pytest.raises(UserError, match="no such file"):
        open_source(str(tmp_path / "missing.avi"))


@pytest.mark.parametrize("pipeline,workers", [(False, 1), (True, 1), (True, 2)])
def test_camera_lost_mid_stream_keeps_a_finished_recording(tmp_path, clip, pipeline, workers):
    camera = CaptureSource(str(clip[0]), live=True, retries=2)  # a "camera" whose frames stop after 12
    out = tmp_path / "rec.avi"
    with pytest.raises(SourceLost, match=f"stopped sending frames after {N} frames") as lost:
        run(opts(output=str(out), fourcc="FFV1", pipeline=pipeline, workers=workers), bright_segmenter(), camera)
    # a live source keeps only its newest frame, so frames the loop was too slow for are dropped
    stats = lost.value.stats
    assert len(read_video(out)) == stats.frames and stats.frames + stats.dropped == N
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside it


def test_failure_leaves_no_half_written_output(tmp_path, clip):
    out = tmp_path / "out.avi"
    with pytest.raises(RuntimeError, match="model failed"):
        run(opts(source=str(clip[0]), output=str(out), fourcc="FFV1"), bright_segmenter(fail_at=5))
    assert not out.exists() and not list(tmp_path.iterdir())
    out.write_bytes(b"an earlier recording")
    with pytest.raises(UserError, match="exists; pass --overwrite"):
        run(opts(source=str(clip[0]), output=str(out), fourcc="FFV1"), bright_segmenter())
    with pytest.raises(RuntimeError):
        run(opts(source=str(clip[0]), output=str(out), fourcc="FFV1", overwrite=True), bright_segmenter(fail_at=5))
    assert out.read_bytes() == b"an earlier recording"  # replaced only by a finished file


def test_bad_options(tmp_path, clip, monkeypatch):
    source = str(clip[0])
    with pytest.raises(UserError, match="--background .*no such file"):
        run(
            opts(source=source, mode="replace", background=str(tmp_path / "nope.jpg"), output=str(tmp_path / "o")),
            bright_segmenter(),
        )
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    with pytest.raises(UserError, match="needs --background"):
        run(opts(source=source, mode="replace"), bright_segmenter())
    with pytest.raises(UserError, match="nothing to do"):
        run(opts(source=source, benchmark=False), bright_segmenter())
    with pytest.raises(UserError, match="is the --source itself"):
        run(opts(source=source, output=source), bright_segmenter())
    with pytest.raises(UserError, match="unknown video type"):
        run(opts(source=source, output=str(tmp_path / "out.xyz")), bright_segmenter())
    monkeypatch.setattr(webcam, "DEFAULT_MODEL", tmp_path / "models" / "lite.onnx")
    with pytest.raises(UserError, match="no default model.*--ckpt"):
        run(opts(source=source))


class NoWindow:
    def __init__(self, *args, **kwargs):
        raise DisplayUnavailable("no GUI in this OpenCV")


class WindowFailsOnShow:
    quit = False

    def write(self, image, name):
        raise DisplayUnavailable("imshow failed")

    def close(self, ok=True):
        pass


@pytest.mark.parametrize("window", [NoWindow, WindowFailsOnShow])
def test_no_display_falls_back_or_says_what_to_pass(tmp_path, clip, monkeypatch, capsys, window):
    monkeypatch.setattr(webcam, "Display", window)
    out = tmp_path / "out.avi"
    stats = run(opts(source=str(clip[0]), display=True, benchmark=False, output=str(out)), bright_segmenter())
    assert stats.frames == N and len(read_video(out)) == N
    assert "no display available" in capsys.readouterr().err
    with pytest.raises(UserError, match="no display available.*--output"):
        run(opts(source=str(clip[0]), display=True, benchmark=False), bright_segmenter())


def test_virtual_camera(tmp_path, clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # not installed
    with pytest.raises(UserError, match="pip install pyvirtualcam"):
        run(opts(source=str(clip[0]), virtual_cam=True), bright_segmenter())

    sent = []

    class Camera:
        device = "/dev/video9"

        def __init__(self, width, height, fps, fmt):
            if fake.fail:
                raise RuntimeError("no v4l2loopback device found")

        def send(self, frame):
            sent.append(frame.shape)

        def close(self):
            pass

    fake = types.SimpleNamespace(Camera=Camera, PixelFormat=types.SimpleNamespace(BGR="BGR"), fail=True)
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    with pytest.raises(UserError, match="v4l2loopback"):
        run(opts(source=str(clip[0]), virtual_cam=True), bright_segmenter())
    fake.fail = False
    run(opts(source=str(clip[0]), virtual_cam=True), bright_segmenter())
    assert sent == [(H, W, 3)] * N


@pytest.mark.slow
def test_cli_benchmark_line_and_clean_errors(tmp_path, clip, exported):
    cmd = [sys.executable, "webcam.py", "--source", str(clip[0]), "--no-display", "--threads", "1"]
    done = subprocess.run(
        [*cmd, "--ckpt", str(exported["onnx"]), "--benchmark"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"frames=12 fps=[\d.]+ model_ms=[\d.]+ total_ms=[\d.]+", done.stdout.strip().splitlines()[-1])
    bad = subprocess.run(
        [*cmd, "--ckpt", str(tmp_path / "missing.onnx"), "--benchmark"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "missing.onnx does not exist" in bad.stderr and "Traceback" not in bad.stderr


def test_live_benchmark_clip_and_scores():
    from lib.tools.livebench import Clip, clip_quality, make_clip, read_stills
    from lib.training.pairs import scan_root

    stills = read_stills(scan_root(ROOT / "samples" / "portraits").pairs[:2])
    clip = make_clip(stills, size=(160, 120), per_still=6)
    assert clip.frames[0].shape == (120, 160, 3) and clip.truths[0].shape == (120, 160)
    assert clip.first == [True] + [False] * 5 + [True] + [False] * 5
    assert clip.moving == ([False] * 3 + [True] * 3) * 2
    assert np.array_equal(clip.truths[0], clip.truths[2])  # the camera is still: the truth stays put
    assert not np.array_equal(clip.truths[3], clip.truths[4])  # then it moves
    perfect = [t > 0 for t in clip.truths]
    assert clip_quality(perfect, clip) == {"iou": 1.0, "boundary_f": 1.0, "flicker_still": 0.0, "flicker_moving": 0.0}
    frozen = [perfect[0]] * 6 + [perfect[6]] * 6  # never flickers, and misses the motion
    scores = clip_quality(frozen, clip)
    assert scores["flicker_moving"] == 0.0 and scores["iou"] < 1.0 and scores["boundary_f"] < 1.0
    blocky = [
        cv2.resize(cv2.resize(p.astype(np.uint8), (10, 8)), (160, 120), interpolation=cv2.INTER_NEAREST) > 0
        for p in perfect
    ]  # an outline upscaled from a tiny mask: the area mostly right, the edge not
    blocky_scores = clip_quality(blocky, clip)
    assert blocky_scores["boundary_f"] < blocky_scores["iou"]
    blinking = [p if i % 2 else ~p for i, p in enumerate(perfect)]  # every other frame inverted
    assert clip_quality(blinking, Clip(clip.frames, clip.truths, clip.moving, clip.first))["flicker_still"] > 0.5


@pytest.mark.slow
def test_live_benchmark_script(exported, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "scripts.benchmark_live", "--ckpt", str(exported["onnx"]), "--data", "samples/portraits",
         "--stills", "2", "--per-still", "4", "--repeats", "1", "--settings", "defaults,change gate",
         "--no-mediapipe", "--json", str(tmp_path / "live.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "live.json").read_text())["rows"]
    assert [r["setting"] for r in rows] == ["defaults", "change gate"]
    assert rows[0]["quality"]["model_calls"] == 1.0 and rows[1]["quality"]["model_calls"] < 1.0
    assert all(r["640x480"]["fps"] > 0 and 0 <= r["quality"]["iou"] <= 1 for r in rows)
    assert all(0 <= r["quality"]["boundary_f"] <= 1 for r in rows)
    assert "| tiny.onnx | defaults |" in out.stdout and "blur compositing per frame" in out.stdout


def test_change_gate_runs_the_model_only_when_the_picture_changes():
    from lib.live.loop import ChangeGate

    rng = np.random.default_rng(0)
    still = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    gate = ChangeGate(threshold=2.0, max_skip=3)
    noisy = [np.clip(still + rng.normal(0, 3, still.shape), 0, 255).astype(np.uint8) for _ in range(8)]
    assert [gate(f) for f in noisy] == [True, False, False, False, True, False, False, False]  # noise: skipped
    moved = np.roll(still, 12, axis=1)
    assert gate(moved) and not gate(moved)  # a real change runs the model at once


def test_change_threshold_saves_model_calls_on_a_still_camera(tmp_path, clip):
    still = [clip[1][0]] * 12
    from lib.tools.livebench import ClipSource

    counted = bright_segmenter()
    stats = run(opts(change_threshold=2.0, max_skip=5), counted, ClipSource(still))
    assert stats.frames == 12 and stats.model_runs + 1 == 2  # frames 0 and 6 only
    with pytest.raises(UserError, match="pass one"):
        run(opts(change_threshold=2.0, every=2), bright_segmenter(), ClipSource(still))
