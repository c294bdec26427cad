"""What several test modules share: generated data in both layouts, the tiny training recipe, the
talking clip, a segmenter that needs no model. Imported as `from helpers import ...` (tests/ is on
the path); fixtures live in conftest.py."""

import json
import os
import stat
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import gin
import numpy as np

import lib.training.train
from lib.live.model_info import ModelInfo, ModelSpec
from lib.live.preprocess import Preprocess
from lib.live.segmenter import Segmenter
from lib.training.config import parse

ROOT = Path(__file__).resolve().parents[1]
# what requirements-live.txt leaves out: the live package must import none of it
TRAINING_STACK = (
    "torch", "torchvision", "segmentation_models_pytorch", "timm", "accelerate", "albumentations", "albucore",
    "matplotlib", "onnx", "onnxscript", "tensorboard", "wandb", "tqdm", "PIL", "scipy", "gin",
)  # fmt: skip
TINY_MODEL = {"arch": "Unet", "encoder_name": "resnet18", "model_kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}}


def draw_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(BGR image, {0,1} mask): an ellipse person of random size and place on noise."""
    image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    center = (int(rng.integers(width // 3, 2 * width // 3)), int(rng.integers(height // 3, 2 * height // 3)))
    axes = (int(rng.integers(width // 6, width // 3)), int(rng.integers(height // 5, height // 2.5)))
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
    image[mask == 1] = np.clip(rng.integers(150, 255, 3), 0, 255).astype(np.uint8)
    return image, mask


def make_aisegment(root: Path, n: int = 8, size=(80, 60), seed: int = 0) -> Path:
    """AISegment layout: clip_img/<group>/clip_<sub>/<name>.jpg + matting/.../<name>.png (alpha)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        group, sub, name = "1803151818", f"{i % 2:08d}", f"1803151818-{i:08d}"
        image, mask = draw_pair(rng, *size)
        img_dir = root / "clip_img" / group / f"clip_{sub}"
        mat_dir = root / "matting" / group / f"matting_{sub}"
        img_dir.mkdir(parents=True, exist_ok=True)
        mat_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img_dir / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rgba = np.dstack([image, mask * 255])  # AISegment mattes carry the cut-out in RGB
        cv2.imwrite(str(mat_dir / f"{name}.png"), rgba)
    return root


def make_folder(root: Path, n: int = 8, size=(80, 60), seed: int = 1, mask_kind: str = "gray") -> Path:
    """Folder layout: images/<name>.jpg + masks/<name>.png (0/255 grey, or RGBA alpha)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = draw_pair(rng, *size)
        cv2.imwrite(str(root / "images" / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out = mask * 255 if mask_kind == "gray" else np.dstack([image, mask * 255])
        cv2.imwrite(str(root / "masks" / f"{i:04d}.png"), out)
    return root


# The tiny training recipe: a few seconds a run on generated data

TINY = [
    "build_model.arch = 'Unet'",
    "build_model.encoder_name = 'resnet18'",
    "build_model.encoder_weights = None",
    "build_model.model_kwargs = {'decoder_channels': (16, 16, 8, 8, 8)}",
    "build_dataloaders.input_size = (64, 64)",
    "build_dataloaders.batch_size = 2",
    "build_dataloaders.num_workers = 0",
    "make_splits.split = (0.5, 0.25, 0.25)",
    "train.log_with = ()",
    "train.export_formats = ()",
    "train.warmup_steps = 2",
]


def bindings(tmp_path: Path, roots: list[Path], *extra: str) -> list[str]:
    roots = [str(r) for r in roots]
    return [*TINY, f"make_splits.roots = {roots!r}", f"train.run_root = '{tmp_path / 'exps'}'", *extra]


def train(tmp_path, roots, *extra, gin_files=()):
    parse(list(gin_files), bindings(tmp_path, roots, *extra))
    return lib.training.train.train()


def reset():
    from accelerate.state import AcceleratorState, PartialState

    gin.clear_config()
    AcceleratorState._reset_state(True)
    PartialState._reset_state()


def outcome(run_dir: Path) -> dict:
    """What a run ends with, less its timings: history, best epoch, test scores."""
    results = json.loads((run_dir / "metrics.json").read_text())
    history = [{k: v for k, v in h.items() if k != "images_per_s"} for h in results["history"]]
    test = {k: v for k, v in results["test"].items() if k != "by_root"}
    return {"steps": results["steps"], "history": history, "best": results["best"], "test": test}


# The talking clip: video and sound, as a phone records

TALK_W, TALK_H, FPS, SECONDS, RATE = 160, 120, 15, 2.0, 16000


def make_talk(path: Path, seconds: float = SECONDS) -> Path:
    """H.264 video (a bright ellipse moving over noise) with an AAC 440 Hz tone, as a phone records."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = TALK_W, TALK_H, "yuv420p"
        audio = out.add_stream("aac", rate=RATE)
        audio.layout = "mono"
        for i in range(round(seconds * FPS)):
            frame = rng.integers(0, 60, (TALK_H, TALK_W, 3), dtype=np.uint8)
            frame[30:90, 50 + 2 * i % 40 : 90 + 2 * i % 40] = 220
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(RATE * seconds)) / RATE)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024].copy(), format="fltp", layout="mono")
            chunk.rate, chunk.pts = RATE, start
            for packet in audio.encode(chunk):
                out.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """type -> (codec, seconds), from the packets themselves."""
    found = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            spans = [(p.pts, p.pts + (p.duration or 0)) for p in container.demux(stream) if p.pts is not None]
            container.seek(0)
            start, end = min(s for s, _ in spans), max(e for _, e in spans)  # a container may shift a stream
            found[stream.type] = (stream.codec_context.name, float((end - start) * stream.time_base))
    return found


# A segmenter without a model

FIXTURE_INFO = ModelInfo(ModelSpec("fixture", "none"), Preprocess(input_size=(128, 96)))


def bright_segmenter(noise: float = 0.0, fail_at: int | None = None, scale: float = 8.0) -> Segmenter:
    """Person = bright pixels, as logits (sure ones for a large scale); optional noise; counts its calls."""

    def backend(x: np.ndarray) -> np.ndarray:
        backend.calls += 1
        if fail_at is not None and backend.calls >= fail_at:
            raise RuntimeError("model failed")
        logits = (x[:, :1] - 0.5) * scale
        rng = np.random.default_rng(zlib.crc32(x.tobytes()))  # the same noise for the same frame, in any thread
        return logits + rng.normal(0, noise, logits.shape).astype(np.float32) if noise else logits

    backend.calls = 0
    return Segmenter(backend, FIXTURE_INFO, name="bright")


# A film's source: two sound tracks and subtitles


def make_tracks(path: Path, frames: int = 15) -> Path:
    """.mkv: FFV1 video, an AAC and an MP3 sound track (a second language), ASS subtitles; 1 s at 15 fps."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("ffv1", rate=FPS)
        video.width, video.height, video.pix_fmt = TALK_W, TALK_H, "bgr0"
        sounds = {codec: out.add_stream(codec, rate=RATE) for codec in ("aac", "mp3")}
        for sound in sounds.values():
            sound.layout = "mono"
        subtitles = out.add_stream("ass")
        subtitles.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames):
            frame = np.full((TALK_H, TALK_W, 3), 40 + 10 * i, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE * frames // FPS) / RATE)).astype(np.float32)
        for codec, sound in sounds.items():
            step = {"aac": 1024, "mp3": 1152}[codec]  # samples a frame of each codec takes
            for start in range(0, tone.size - step + 1, step):
                chunk = av.AudioFrame.from_ndarray(
                    tone[None, start : start + step].copy(), format="fltp", layout="mono"
                )
                chunk.rate, chunk.pts = RATE, start
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        line = av.Packet(b"0,0,Default,,0,0,0,,hello")
        line.stream, line.pts, line.dts, line.duration = subtitles, 100, 100, 500
        line.time_base = Fraction(1, 1000)
        out.mux(line)
    return path


# Real devices, pipes and terminals for the file-writing rules (lib.live.files)

NODES = {"null": (stat.S_IFCHR, 1, 3), "full": (stat.S_IFCHR, 1, 7), "block": (stat.S_IFBLK, 7, 250)}


def device_node(folder: Path, name: str, kind: str) -> Path:
    """A real node in `folder`: 'null' and 'full' (the character devices /dev/null and /dev/full are),
    'block' (a loop disk number no system uses) or 'fifo'. Made here, not used in /dev, so a
    regression replaces a node of the test's own. pytest.skip where nodes cannot be made (not root)."""
    import pytest

    path = folder / name
    try:
        if kind == "fifo":
            os.mkfifo(path)
        else:
            mode, major, minor = NODES[kind]
            os.mknod(path, mode | 0o666, os.makedev(major, minor))
    except PermissionError as error:
        pytest.skip(f"cannot make a device node here (needs root): {error}")
    return path


def node_kind(path: Path) -> tuple[int, int]:
    """(file type, device number) of a path, without following a link."""
    info = os.lstat(path)
    return stat.S_IFMT(info.st_mode), info.st_rdev


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def on_terminal(command: list, cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run `command` with stderr on a real pseudo-terminal (as in a shell window); (exit status, what it showed)."""
    import pty

    master, slave = pty.openpty()
    run = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the program closed the terminal's other side
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return run.wait(timeout=timeout), shown.decode(errors="replace")


# Masks as people's datasets store them, and file names that are not UTF-8 (lib.training.masks and lib.training.pairs)


def restyle_masks(root: Path, style: str) -> Path:
    """Rewrite a folder-layout root's 0/255 masks: 'grey100' (0 and 100 only: a hard mask of
    another value), 'soft100' (a soft edge, 0..100: never reaching half of 255), 'blank' (all 0)."""
    for path in sorted((root / "masks").iterdir()):
        person = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0
        if style == "grey100":
            values = person.astype(np.uint8) * 100
        elif style == "soft100":
            values = np.round(cv2.GaussianBlur(person.astype(np.float32), (9, 9), 3) * 100).astype(np.uint8)
        else:
            values = np.zeros_like(person, np.uint8)
        cv2.imwrite(str(path), values)
    return root


LATIN1 = "caf\udce9"  # b'caf\xe9' (latin-1 'café') as Python carries a name that is not UTF-8


def latin1_names(root: Path) -> Path:
    """Give every photo and mask of a folder-layout root a name that is not UTF-8 (b'caf\\xe9-0000.jpg'):
    real bytes on disk, as a camera or an old archive leaves them."""
    for kind in ("images", "masks"):
        for path in sorted((root / kind).iterdir()):
            os.rename(bytes(path), bytes(path.with_name(f"{LATIN1}-{path.name}")))
    return root


# webcam.py run as a user runs it (tests/test_bad_input_webcam*.py; their inputs: conftest.py `files`)

WEBCAM_CLIP = (160, 120, 12)  # width, height and frames of the clip those tests give webcam.py
HEADLESS = {**os.environ, "DISPLAY": "", "WAYLAND_DISPLAY": ""}


def webcam(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """webcam.py with these arguments, as a user runs it, with no screen."""
    return subprocess.run(
        [sys.executable, str(ROOT / "webcam.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=HEADLESS,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what a refused run must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_one_line(done: subprocess.CompletedProcess, status: int, names: str) -> None:
    """Exit status `status`, no traceback, and one `error: ` line on stderr that names `names`."""
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], done.stderr


def video_frames(path: Path) -> list:
    """Every frame of a video as OpenCV decodes it."""
    cap, frames = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        frames.append(got[1])
    return frames
