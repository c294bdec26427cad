"""webcam.py's window on a real X server (Xvfb), used as a person would: the screen is read back
(xwd), keys are typed (xdotool, real X key events), q ends the run.

.ci/run installs xvfb, x11-apps (xwd), x11-utils (xwininfo) and xdotool where apt-get exists;
elsewhere these tests skip and say which program is missing.
"""

import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.live.compose import Compositor
from lib.live.segmenter import load_segmenter
from lib.live.window import fit_into

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "lite_int8.onnx"
PHOTO = next(iter(sorted((ROOT / "samples" / "portraits" / "clip_img").rglob("*.jpg"))))
W, H, FPS, FRAMES = 320, 240, 10, 80
TITLE = "person-seg"
TOOLS = ("Xvfb", "xwd", "xwininfo", "xdotool")


def read_xwd(data: bytes) -> np.ndarray:
    """An XWD screen dump (ZPixmap, 24 or 32 bits per pixel) as a BGR array."""
    header = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order, bits, line = (header[i] for i in (0, 4, 5, 7, 11, 12))
    step = bits // 8  # Xvfb's default 24-bit screen packs 3 bytes a pixel
    start = header_size + 12 * header[19]  # after the colour map
    pixels = np.frombuffer(data, np.uint8, line * height, start).reshape(height, line)[:, : step * width]
    pixels = pixels.reshape(height, width, step)
    return np.ascontiguousarray(pixels[..., :3] if byte_order == 0 else pixels[..., [step - 1, step - 2, step - 3]])


@pytest.fixture(scope="module")
def xserver():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install xvfb x11-apps x11-utils xdotool; .ci/run does)")
    pytest.importorskip("pygame", reason="needs pygame-ce (requirements.txt)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists())
    env = {**os.environ, "DISPLAY": f":{number}"}
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "1024x768x24", "-nolisten", "tcp"], stderr=subprocess.DEVNULL
    )
    end = time.monotonic() + 20
    while subprocess.run(["xwininfo", "-root"], env=env, capture_output=True).returncode != 0:
        if server.poll() is not None or time.monotonic() > end:
            pytest.skip(f"Xvfb :{number} did not start")
        time.sleep(0.1)
    yield env
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A photo held still: every frame the same, so any frame on the screen is the expected one."""
    photo = cv2.imread(str(PHOTO))
    fitted, (left, top) = fit_into(photo, (W, H))
    frame = np.zeros((H, W, 3), np.uint8)
    frame[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    path = tmp_path_factory.mktemp("window") / "still.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), FPS, (W, H))  # lossless
    for _ in range(FRAMES):
        writer.write(frame)
    writer.release()
    return path, frame


def screen(env) -> np.ndarray:
    return read_xwd(subprocess.run(["xwd", "-root", "-silent"], env=env, capture_output=True, check=True).stdout)


def window_box(env, run: subprocess.Popen, timeout: float = 60) -> tuple[int, int, int, int]:
    """(x, y, width, height) of our window, from xwininfo's tree (it is found by its title)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and run.poll() is None:
        tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True).stdout
        for line in tree.splitlines():
            if f'"{TITLE}' in line:
                size, x, y = line.split()[-2].split("+")[:3]
                width, height = size.split("x")
                return int(x), int(y), int(width), int(height)
        time.sleep(0.2)
    raise AssertionError(f"the window never appeared: {run.poll()=} {run.stderr.read() if run.poll() else ''}")


def wait_for(env, box, expected: np.ndarray, timeout: float = 20) -> float:
    """Poll the screen until the window shows `expected`; the last mean difference."""
    x, y, w, h = box
    end, diff = time.monotonic() + timeout, 255.0
    while time.monotonic() < end:
        shown = screen(env)[y : y + h, x : x + w].astype(int)
        diff = float(np.abs(shown - expected).mean()) if shown.shape == expected.shape else 255.0
        if diff < 1.5:
            return diff
        time.sleep(0.2)
    return diff


def composite(frame: np.ndarray, mode: str) -> np.ndarray:
    prob = load_segmenter(MODEL, threads=1)(frame)  # the frame at its own size, as webcam.py shows it
    return Compositor(mode)(frame, prob).astype(int)


@pytest.mark.slow
def test_window_shows_the_composite_keys_change_the_mode_and_q_quits(xserver, still_clip, tmp_path):
    path, frame = still_clip
    out = tmp_path / "recorded.mkv"
    run = subprocess.Popen(
        [sys.executable, "webcam.py", "--source", str(path), "--no-stats", "--threads", "1", "--output", str(out)],
        cwd=ROOT, env=xserver, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        box = window_box(xserver, run)
        assert box[2:] == (W, H)  # the window opens at the frame's size
        assert wait_for(xserver, box, composite(frame, "blur")) < 1.5  # the blurred frame, as the compositor makes it
        shot = screen(xserver)
        cv2.imwrite(str(tmp_path / "window.png"), shot)
        center = (box[0] + box[2] // 2, box[1] + box[3] // 2)
        # no window manager: the keyboard follows the pointer
        subprocess.run(["xdotool", "mousemove", *map(str, center)], env=xserver, check=True)
        subprocess.run(["xdotool", "key", "m"], env=xserver, check=True)  # blur -> mask
        assert wait_for(xserver, box, composite(frame, "mask")) < 1.5
        subprocess.run(["xdotool", "key", "q"], env=xserver, check=True)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert "Traceback" not in err and "key: mode mask" in err
    frames, fps = float(_field(err, "frames=")), float(_field(err, "fps="))
    assert frames < FRAMES  # q ended it before the clip did
    recorded, count = cv2.VideoCapture(str(out)), 0
    while recorded.read()[0]:
        count += 1
    assert count == frames  # the output was finished, every frame shown is in it
    assert 0.7 * FPS < fps < 1.15 * FPS  # a file plays at its own frame rate, not as fast as it can


def _field(text: str, key: str) -> str:
    line = next(line for line in text.splitlines() if line.startswith("done: "))
    return line.split(key)[1].split()[0]


def test_fit_into_keeps_the_aspect_and_centres():
    image = np.full((100, 200, 3), 255, np.uint8)
    fitted, (left, top) = fit_into(image, (300, 300))
    assert fitted.shape == (150, 300, 3) and (left, top) == (0, 75)
    fitted, (left, top) = fit_into(image, (100, 400))
    assert fitted.shape == (50, 100, 3) and (left, top) == (0, 175)


def label_region(image: np.ndarray) -> np.ndarray:
    """Where the FPS line sits (lib.live.stats.Stats.draw: text from (8, 20), about 10 px high)."""
    return image[8:24, 10:200].astype(int)


def check_readable(region: np.ndarray) -> None:
    grey = region.mean(axis=2)
    assert np.median(grey) < 100  # a dark box behind the text, whatever the frame
    text = grey > 200
    assert 0.05 < text.mean() < 0.5  # white strokes on it: glyphs, not a blank bar
    assert grey[text].mean() - grey[~text].mean() > 150  # and they stand out


def test_the_fps_line_has_a_dark_box_on_a_white_frame():
    from lib.live.stats import Stats

    stats = Stats()
    stats.fps_now, stats.last_model_ms, stats.last_total_ms = 29.7, 12.3, 30.1
    white = np.full((H, W, 3), 255, np.uint8)
    drawn = stats.draw(white)
    check_readable(label_region(drawn))
    assert (drawn[40:] == 255).all()  # the rest of the frame untouched


@pytest.mark.slow
def test_the_fps_line_is_readable_on_screen_on_a_white_frame(xserver, tmp_path):
    clip = tmp_path / "white.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"FFV1"), FPS, (W, H))
    for _ in range(FRAMES):
        writer.write(np.full((H, W, 3), 255, np.uint8))  # a white wall: the frame the old label vanished on
    writer.release()
    run = subprocess.Popen(
        [sys.executable, "webcam.py", "--source", str(clip), "--threads", "1"],
        cwd=ROOT, env=xserver, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        x, y, w, h = window_box(xserver, run)
        end, shot = time.monotonic() + 20, None
        while time.monotonic() < end:  # until a frame with its line is up
            shot = screen(xserver)[y : y + h, x : x + w]
            if np.median(label_region(shot).mean(axis=2)) < 100:
                break
            time.sleep(0.2)
        cv2.imwrite(str(tmp_path / "label.png"), shot)  # to look at: pytest keeps a failed test's tmp_path
        check_readable(label_region(shot))
        assert (shot[60:] > 240).all()  # the frame itself is white on the screen
        subprocess.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2)], env=xserver, check=True)
        subprocess.run(["xdotool", "key", "q"], env=xserver, check=True)
        _, err = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 0 and "Traceback" not in err, err
