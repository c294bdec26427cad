"""webcam.py given bad values, bad paths and failing disks, run as a user runs it (a subprocess).

Per case: the exit status, one line naming the flag or file, no traceback, and nothing the user
had (an earlier output, a folder's files) changed or left half-written. A full disk and a
read-only folder are real tmpfs mounts (root only; skipped with the reason elsewhere).
"""

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
W, H, N = 160, 120, 12

pytestmark = pytest.mark.slow  # a subprocess per case


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """clip.avi (noise, lossless: it does not compress), a truncated copy, a 1x1 photo, a background."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 15, (W, H))
    for _ in range(N):
        writer.write(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    writer.release()
    data = (folder / "clip.avi").read_bytes()
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])  # the header still says 12 frames
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / "bg.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "earlier.mp4").write_bytes(b"the user's earlier video")
    (folder / "photos").mkdir()
    (folder / "photos" / "mine.txt").write_text("the user's file")
    return folder


def webcam(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "webcam.py"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env={**os.environ, "DISPLAY": "", "WAYLAND_DISPLAY": ""},
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_one_line(done: subprocess.CompletedProcess, status: int, names: str) -> None:
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], done.stderr


CLIP = ("--source", "clip.avi", "--no-display", "--benchmark")
# (arguments, what the one line must name)
REFUSED = [
    ((*CLIP, "--blur-strength", "1e9"), "--blur-strength 1000000000.0: expected a value from 0.05 to 20.0"),
    ((*CLIP, "--blur-strength", "0"), "--blur-strength"),
    ((*CLIP, "--feather", "-1"), "--feather -1.0: expected"),
    ((*CLIP, "--threads", "-2"), "--threads -2: expected"),
    ((*CLIP, "--threads", "two"), "--threads: invalid int value"),
    ((*CLIP, "--model-workers", "0"), "--model-workers 0"),
    ((*CLIP, "--every", "0"), "--every 0"),
    ((*CLIP, "--smooth-momentum", "1.5"), "--smooth-momentum 1.5"),
    ((*CLIP, "--change-threshold", "nan"), "--change-threshold nan"),
    ((*CLIP, "--change-threshold", "-1"), "--change-threshold -1.0"),
    ((*CLIP, "--max-frames", "0"), "--max-frames 0"),
    ((*CLIP, "--mode", "blur", "--background", "bg.png"), "--background is only used with --mode replace"),
    ((*CLIP, "--mode", "mask", "--blur-strength", "2"), "--blur-strength only changes --mode blur"),
    ((*CLIP, "--refine", "--feather", "0.1"), "--feather does nothing with --refine"),
    ((*CLIP, "--no-smooth", "--smooth-momentum", "0.5"), "--smooth-momentum does nothing with --no-smooth"),
    ((*CLIP, "--max-skip", "3"), "--max-skip only works with --change-threshold"),
    ((*CLIP, "--size", "640x480"), "--size is asked of a camera"),
    ((*CLIP, "--camera-fps", "30"), "--camera-fps is asked of a camera"),
    (("--source", "0", "--size", "0x0", "--no-display", "--benchmark"), "--size 0x0"),
    (
        ("--source", "0", "--size", "big", "--no-display", "--benchmark"),
        "--size/--camera-size: 'big': expected WIDTHxHEIGHT",
    ),
    ((*CLIP, "--device", "gpu"), "--device gpu: expected cpu, cuda or cuda:N"),
    ((*CLIP, "--output", "x.avi", "--fourcc", "XYZW"), "--fourcc XYZW: this OpenCV writes mp4v, MJPG, FFV1, XVID"),
    ((*CLIP, "--fourcc", "MJPG"), "--fourcc needs --output"),
    ((*CLIP, "--overwrite"), "--overwrite needs --output"),
    ((*CLIP, "--no-stats"), "--no-stats only changes the window"),
    ((*CLIP, "--output", "earlier.mp4"), "--output earlier.mp4 exists; pass --overwrite"),
    ((*CLIP, "--output", "photos"), "--output photos: the folder has files in it"),
    ((*CLIP, "--output", "nowhere/out.mp4"), "folder nowhere does not exist"),
    ((*CLIP, "--output", "out.xyz"), "unknown video type '.xyz'"),
    (("--source", "dot.png", "--no-display", "--output", "dot.mp4"), "1x1 pixels, too small for a video"),
    ((*CLIP, "--ckpt", "missing.onnx"), "missing.onnx does not exist"),
    (("--source", "clip.avi"), "no display available (no screen: DISPLAY and WAYLAND_DISPLAY are not set)"),
    (("--source", "nothing.mp4", "--no-display", "--benchmark"), "--source nothing.mp4: no such file"),
]


@pytest.mark.parametrize("args,names", REFUSED, ids=[n[:48] for _, n in REFUSED])
def test_refused_in_one_line_with_nothing_changed(files, args, names):
    before = snapshot(files)
    check_one_line(webcam(*args, cwd=files), 2, names)
    assert snapshot(files) == before  # no output, no partial file, the earlier video untouched


def test_truncated_video_says_how_many_frames_it_had(files, tmp_path):
    done = webcam("--source", str(files / "cut.avi"), "--no-display", "--output", "cut_out.avi", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert f"of the {N} frames its header announces" in done.stderr
    had = int(done.stderr.split("ended after ")[1].split()[0])
    assert 0 < had < N and len(_frames(tmp_path / "cut_out.avi")) == had


def _frames(path: Path) -> list:
    cap, frames = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        frames.append(got[1])
    return frames


@pytest.fixture
def mount(tmp_path):
    """A tmpfs of a given size and mode at a fresh folder; unmounted afterwards."""
    mounted = []

    def make(options: str, fill: dict[str, bytes] = ()) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        writable = ",".join(o for o in options.split(",") if o != "ro")  # filled first, then made read-only
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", writable, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(point)
        for name, data in dict(fill).items():
            (point / name).write_bytes(data)
        if "ro" in options.split(","):
            subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", str(point)], capture_output=True)


@pytest.mark.parametrize("output", ["out.mkv", "frames", "out.avi --fourcc FFV1"])
def test_full_disk_keeps_the_earlier_output_and_leaves_no_partial(files, mount, output):
    name, *more = output.split()
    earlier = {name: b"the user's earlier output"} if "." in name else {}
    disk = mount("size=200k,mode=0777", earlier)
    before = snapshot(disk)
    args = ("--source", str(files / "clip.avi"), "--no-display", "--output", str(disk / name), "--overwrite", *more)
    args += ("--mode", "mask")  # the noise stays in the picture: about 50 kB a frame, 600 kB in all
    done = webcam(*args, cwd=files)
    check_one_line(done, 2, f"--output {disk / name}")
    assert "no space left on the disk (ENOSPC)" in done.stderr or "disk full" in done.stderr
    assert snapshot(disk) == before and sorted(p.name for p in disk.iterdir()) == sorted(earlier)


@pytest.mark.parametrize("output", ["out.mp4", "frames"])
def test_read_only_folder_is_said_before_any_work(files, mount, output):
    disk = mount("size=64k,ro", {"keep.txt": b"x"})
    done = webcam("--source", str(files / "clip.avi"), "--no-display", "--output", str(disk / output), cwd=files)
    check_one_line(done, 2, f"--output {disk / output}: cannot write there: read-only file system (EROFS)")
    assert snapshot(disk) == {"keep.txt": b"x"}
