"""webcam.py given bad values, bad paths and failing disks, run as a user runs it (a subprocess).

Per case: the exit status, one line naming the flag or file, no traceback, and nothing the user
had (an earlier output, a folder's files) changed or left half-written. A full disk and a
read-only folder are real tmpfs mounts (root only; skipped with the reason elsewhere).
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import count_frames, device_node, make_tracks, node_kind, on_terminal

from lib.live.errors import UserError
from lib.live.files import OutputTaken, check_output_file, publish, write_image, write_text
from lib.live.preprocess import read_frame, read_image
from lib.live.stop import Stopped, StopSignals

ROOT = Path(__file__).resolve().parents[1]
W, H, N = 160, 120, 12
HEADLESS = {**os.environ, "DISPLAY": "", "WAYLAND_DISPLAY": ""}

# the cases that run webcam.py as a subprocess are marked slow; the in-process ones are not


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
        cwd=cwd, capture_output=True, text=True, timeout=120, env=HEADLESS,
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


@pytest.mark.slow
@pytest.mark.parametrize("args,names", REFUSED, ids=[n[:48] for _, n in REFUSED])
def test_refused_in_one_line_with_nothing_changed(files, args, names):
    before = snapshot(files)
    check_one_line(webcam(*args, cwd=files), 2, names)
    assert snapshot(files) == before  # no output, no partial file, the earlier video untouched


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("output", ["out.mp4", "frames"])
def test_read_only_folder_is_said_before_any_work(files, mount, output):
    disk = mount("size=64k,ro", {"keep.txt": b"x"})
    done = webcam("--source", str(files / "clip.avi"), "--no-display", "--output", str(disk / output), cwd=files)
    check_one_line(done, 2, f"--output {disk / output}: cannot write there: read-only file system (EROFS)")
    assert snapshot(disk) == {"keep.txt": b"x"}


# Devices and pipes are written into or refused in one line, never replaced by a file

WEBCAM_INTO = [
    # (--output, how it is made, more arguments, what the one line names)
    ("/dev/full", "system", (), "--output /dev/full: a character device, not a file"),
    ("null.mp4", "null", ("--overwrite",), "--output null.mp4: a character device, not a file"),
    ("full", "full", (), "--output full: a character device, not a file"),
    ("fifo.mkv", "fifo", (), "--output fifo.mkv: a named pipe (FIFO), not a file"),
    ("link.mp4", "link", ("--overwrite",), "--output link.mp4: a character device, not a file"),
]


@pytest.mark.slow
@pytest.mark.parametrize("output,made,more,names", WEBCAM_INTO, ids=[o for o, *_ in WEBCAM_INTO])
def test_webcam_output_onto_a_device_or_pipe_is_refused_and_it_stays_one(files, tmp_path, output, made, more, names):
    if made == "link":
        os.symlink(device_node(tmp_path, "null", "null"), tmp_path / output)
    elif made != "system":
        device_node(tmp_path, output, made)
    target = Path(output) if made == "system" else tmp_path / output
    kind, before, in_dev = node_kind(target.resolve()), sorted(os.listdir(tmp_path)), sorted(os.listdir("/dev"))
    done = webcam("--source", str(files / "clip.avi"), "--no-display", "--output", output, *more, cwd=tmp_path)
    check_one_line(done, 2, names)
    assert node_kind(target.resolve()) == kind  # still the device or pipe, not a file
    assert sorted(os.listdir(tmp_path)) == before and sorted(os.listdir("/dev")) == in_dev  # no temporaries


TEXT_INTO = [
    # (target, how it is made, what the writer says: None when it writes)
    ("null", "null", None),
    ("fifo", "fifo", None),
    ("/dev/full", "system", "--json /dev/full: could not write into this character device: no space left on the disk"),
    ("disk", "block", "--json {path}: a block device (a disk); expected a file name"),
    ("plain.json", "file", None),
]


@pytest.mark.parametrize("target,made,says", TEXT_INTO, ids=[t for t, *_ in TEXT_INTO])
def test_text_outputs_go_into_devices_and_pipes_and_replace_only_files(tmp_path, target, made, says):
    """write_text, the writer of every --json: what evaluate.py and train.py do with such a path."""
    path = Path(target) if made == "system" else tmp_path / target
    if made == "file":
        path.write_text("the user's earlier file")
    elif made != "system":
        device_node(tmp_path, target, made)
    kind, before, in_dev = node_kind(path), sorted(os.listdir(tmp_path)), sorted(os.listdir("/dev"))
    text, heard = '{"iou": 0.9}\n', []
    reader = threading.Thread(target=lambda: heard.append(path.read_text())) if made == "fifo" else None
    if reader:
        reader.start()
    if says is None:
        write_text(
            check_output_file(path, "--json", overwrite=made == "file"), text, flag="--json"
        )  # a device needs none
    else:
        with pytest.raises(UserError) as error:
            write_text(check_output_file(path, "--json"), text, flag="--json")
        assert str(error.value).startswith(says.format(path=path))
    if reader:
        reader.join(timeout=10)
        assert heard == [text]  # the program reading the pipe got the text
    assert node_kind(path) == kind or made == "file"  # a device or pipe is never turned into a file
    assert sorted(os.listdir(tmp_path)) == before and sorted(os.listdir("/dev")) == in_dev
    if made == "file":
        assert path.read_text() == text


def test_text_output_on_a_full_disk_keeps_the_earlier_file(mount):
    disk = mount("size=16k,mode=0777", {"scores.json": b"the user's earlier scores"})
    with pytest.raises(UserError, match=f"--json {disk}/scores.json: could not write it: no space left on the disk"):
        write_text(disk / "scores.json", "x" * 64_000, flag="--json")
    assert snapshot(disk) == {"scores.json": b"the user's earlier scores"}  # kept, no temporary left


# SIGTERM and SIGHUP finish a recording as Ctrl-C does


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """400 smooth frames (a bar sweeping a gradient: small as FFV1), long enough to signal mid-run."""
    path = tmp_path_factory.mktemp("long") / "long.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 15, (W, H))
    ramp = np.tile(np.linspace(0, 160, W, dtype=np.uint8), (H, 1))
    for i in range(400):
        frame = cv2.merge([ramp, ramp, ramp])
        frame[:, i % W : i % W + 20] = 230
        writer.write(frame)
    writer.release()
    return path


def start_recording(clip: Path, out: Path, *more: str) -> subprocess.Popen:
    """webcam.py writing `out`, returned once its temporary file has frames in it (it is recording)."""
    run = subprocess.Popen(
        [sys.executable, str(ROOT / "webcam.py"), "--source", str(clip), "--no-display", "--output", str(out), *more],
        cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=HEADLESS,
    )  # fmt: skip
    end = time.monotonic() + 60
    while not any(p.stat().st_size > 4096 for p in out.parent.glob(f".{out.stem}.tmp*")):
        assert run.poll() is None and time.monotonic() < end, f"never started writing: {run.communicate()}"
        time.sleep(0.05)
    return run


SIGNALS = [
    ("SIGTERM", (), "stopped (SIGTERM)"),
    ("SIGHUP", (), "stopped (SIGHUP: the terminal was closed)"),
    ("SIGINT", (), "stopped (Ctrl-C)"),
    ("SIGTERM", ("--sequential",), "stopped (SIGTERM)"),  # the frame is written on the main thread
]


@pytest.mark.slow
@pytest.mark.parametrize("name,more,says", SIGNALS, ids=[f"{n}{''.join(m)}" for n, m, _ in SIGNALS])
def test_a_signal_finishes_the_recording(long_clip, tmp_path, name, more, says):
    out = tmp_path / "recording.mkv"
    run = start_recording(long_clip, out, *more)
    run.send_signal(getattr(signal, name))  # only the pid of the program this test started
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "Traceback" not in err and says in err.splitlines()
    frames = int(err.split("done: frames=")[1].split()[0])
    assert 0 < frames < 400 and count_frames(out) == frames  # every frame counted is in the finished file
    assert os.listdir(tmp_path) == ["recording.mkv"]  # no hidden temporary left


def test_a_signal_waits_for_the_frame_being_written_and_not_for_the_finish():
    """A real SIGTERM to this process: raised after a held block, ignored once the output is finishing."""
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        with pytest.raises(Stopped, match="SIGTERM"):
            with stop.held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)  # the handler runs here, inside the block: it must not raise yet
                written = True
        assert written
        stop.finishing()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # ignored: the output is being finished
    assert signal.getsignal(signal.SIGTERM) == before  # the run's handlers are gone with it


# Two runs writing the same new --output


@pytest.mark.slow
def test_two_runs_writing_one_new_output_keep_both_results(long_clip, tmp_path):
    out = tmp_path / "same.mkv"
    first = start_recording(long_clip, out)  # all 400 frames: the slower one
    second = start_recording(long_clip, out, "--max-frames", "40")
    (_, err_first), (_, err_second) = first.communicate(timeout=120), second.communicate(timeout=120)
    assert second.returncode == 0, err_second  # finished first: its file is same.mkv
    done = subprocess.CompletedProcess(first.args, first.returncode, "", err_first)
    check_one_line(done, 1, f"--output {out} appeared while this run was writing it")
    assert f"this run's result was kept as {tmp_path / 'same-2.mkv'}" in err_first
    assert count_frames(out) == 40 and count_frames(tmp_path / "same-2.mkv") == 400  # nothing lost
    assert sorted(os.listdir(tmp_path)) == ["same-2.mkv", "same.mkv"]


def test_the_final_rename_never_replaces_what_appeared_meanwhile(tmp_path):
    """lib.live.files.publish: a file and a folder of another run appeared while this one wrote."""
    (tmp_path / "same.mkv").write_bytes(b"theirs")
    (tmp_path / ".same.tmp1.mkv").write_bytes(b"mine")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "000001.png").write_bytes(b"theirs")
    (tmp_path / ".frames.tmp1").mkdir()
    (tmp_path / ".frames.tmp1" / "000001.png").write_bytes(b"mine")
    for name in ("same.mkv", "frames"):
        target = tmp_path / name
        with pytest.raises(OutputTaken) as error:
            publish(target.with_name(f".{target.stem}.tmp1{target.suffix}"), target, overwrite=False)
        kept = target.with_name(f"{target.stem}-2{target.suffix}")
        assert str(error.value).endswith(f"it was left as it is, and this run's result was kept as {kept}")
        assert error.value.exit_code == 1
    assert snapshot(tmp_path) == {
        "same.mkv": b"theirs", "same-2.mkv": b"mine", "frames/000001.png": b"theirs", "frames-2/000001.png": b"mine",
    }  # fmt: skip


# File names that are not UTF-8 (bytes from an old disk or archive): OpenCV 5 crashed on them


@pytest.fixture(scope="module")
def odd_names(files, tmp_path_factory) -> Path:
    """b'caf\\xe9.jpg', a folder b'photos\\xe9' of such photos, b'clip\\xe9.avi', b'bg\\xe9.png': real names on disk."""
    folder = tmp_path_factory.mktemp("names")
    raw = os.fsencode(folder)
    ok, jpeg = cv2.imencode(".jpg", np.full((H, W, 3), 90, np.uint8))
    for name in (b"caf\xe9.jpg", b"photos\xe9/un\xe9.jpg", b"photos\xe9/deux\xe9.jpg"):
        os.makedirs(os.path.dirname(raw + b"/" + name), exist_ok=True)
        with open(raw + b"/" + name, "wb") as out:
            out.write(jpeg.tobytes())
    with open(raw + b"/clip\xe9.avi", "wb") as out:
        out.write((files / "clip.avi").read_bytes())
    with open(raw + b"/bg\xe9.png", "wb") as out:
        out.write((files / "bg.png").read_bytes())
    return folder


READS = [
    # (file name as bytes, flags, shape read: None when it is no image)
    (b"caf\xe9.jpg", cv2.IMREAD_COLOR, (H, W, 3)),
    (b"masque\xe9.png", cv2.IMREAD_UNCHANGED, (H, W, 4)),  # a matte with its alpha, as masks are read
    (b"masque\xe9.png", cv2.IMREAD_GRAYSCALE, (H, W)),
    (b"texte\xe9.jpg", cv2.IMREAD_COLOR, None),
    (b"vide\xe9.png", cv2.IMREAD_COLOR, None),
    (b"absent\xe9.png", cv2.IMREAD_COLOR, None),
]


@pytest.mark.parametrize("name,flags,shape", READS, ids=[f"{n.decode('latin-1')}-{f}" for n, f, _ in READS])
def test_the_shared_image_reader_takes_any_name(tmp_path, name, flags, shape):
    """lib.live.preprocess.read_image / read_frame: photos and masks of every reader (webcam, evaluate, pairs)."""
    raw = os.fsencode(tmp_path) + b"/"
    contents = {
        b"caf\xe9.jpg": cv2.imencode(".jpg", np.full((H, W, 3), 90, np.uint8))[1].tobytes(),
        b"masque\xe9.png": cv2.imencode(".png", np.full((H, W, 4), 255, np.uint8))[1].tobytes(),
        b"texte\xe9.jpg": b"not a picture",
        b"vide\xe9.png": b"",
    }
    for made, data in contents.items():
        with open(raw + made, "wb") as out:
            out.write(data)
    path = Path(os.fsdecode(raw + name))  # how Python hands such a name over: surrogates, as argv does
    image = read_image(path, flags)  # OpenCV's own imread crashed the process (SIGSEGV) here
    assert (None if image is None else image.shape) == shape
    if flags == cv2.IMREAD_COLOR and shape is None:
        with pytest.raises(OSError, match="not a readable image"):
            read_frame(path)


def test_the_shared_image_writer_takes_any_name(tmp_path):
    """lib.live.files.write_image: cv2.imwrite crashed the process on such a name, as imread did."""
    picture = np.full((H, W, 3), 90, np.uint8)
    for name in (b"caf\xe9.jpg", b"masque\xe9.PNG"):
        path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + name))
        write_image(path, picture, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert read_image(path, cv2.IMREAD_COLOR).shape == (H, W, 3)
    with pytest.raises(UserError, match=r"--picture .*out.xyz: OpenCV cannot encode a 160x120 image as .xyz"):
        write_image(tmp_path / "out.xyz", picture, flag="--picture")
    assert sorted(os.listdir(os.fsencode(tmp_path))) == [b"caf\xe9.jpg", b"masque\xe9.PNG"]  # no temporary left


NAMES = [
    # (arguments, the output and its frames: None when the one line must name the file instead)
    ((b"--source", b"caf\xe9.jpg", b"--output", b"caf\xe9 out.png"), (b"caf\xe9 out.png", 1)),
    ((b"--source", b"photos\xe9", b"--output", b"photos\xe9.mkv"), (b"photos\xe9.mkv", 2)),
    ((b"--source", b"clip\xe9.avi", b"--output", b"clip\xe9.mp4"), (b"clip\xe9.mp4", N)),  # PyAV, with the sound
    ((b"--source", b"clip\xe9.avi", b"--output", b"cv\xe9.avi", b"--fourcc", b"MJPG"), (b"cv\xe9.avi", N)),
    ((b"--source", b"clip\xe9.avi", b"--background", b"bg\xe9.png", b"--output", b"bg\xe9.mkv"), (b"bg\xe9.mkv", N)),
    ((b"--source", b"clip\xe9.avi", b"--background", b"clip\xe9.avi", b"--output", b"v\xe9.mkv"), (b"v\xe9.mkv", N)),
    ((b"--source", b"clip\xe9.avi", b"--ckpt", b"m\xe9.onnx", b"--benchmark"), None),
]


@pytest.mark.slow
@pytest.mark.parametrize("args,made", NAMES, ids=[os.fsdecode(a[-1] if m is None else m[0]) for a, m in NAMES])
def test_names_that_are_not_utf8_work_or_are_named(odd_names, args, made):
    before = snapshot(odd_names)
    done = subprocess.run(
        [sys.executable, str(ROOT / "webcam.py"), "--no-display", *args], cwd=odd_names, capture_output=True,
        env=HEADLESS, timeout=120,
    )  # fmt: skip
    err = done.stderr.decode(errors="backslashreplace")
    if made is None:
        check_one_line(subprocess.CompletedProcess(args, done.returncode, "", err), 2, "--ckpt m\\udce9.onnx: the")
        assert snapshot(odd_names) == before
        return
    assert done.returncode == 0 and "Traceback" not in err, err  # rc 134/139 was OpenCV's crash
    path = Path(os.fsdecode(os.fsencode(odd_names) + b"/" + made[0]))
    frames = 1 if path.suffix == ".png" else count_frames(path)
    assert frames == made[1] and f"done: frames={made[1]}" in err


# Photos of mixed sizes in one video keep their aspect


@pytest.mark.slow
@pytest.mark.parametrize("output", ["mixed.mkv", "mixed.avi --fourcc FFV1"])
def test_photos_of_other_sizes_are_fitted_with_bars_not_squashed(tmp_path, output):
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"1_landscape": (W, H), "2_portrait": (60, 120), "3_panorama": (200, 50)}  # (width, height)
    for name, (width, height) in sizes.items():
        cv2.imwrite(str(photos / f"{name}.png"), np.full((height, width, 3), 200, np.uint8))
    name, *more = output.split()
    done = webcam("--source", "photos", "--no-display", "--output", name, *more, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: 2_portrait is 60x120, the video {W}x{H} (its first frame's size): frames of other "
                     "sizes are scaled to fit, with black bars"]  # fmt: skip
    frames = _frames(tmp_path / name)
    assert len(frames) == 3 and all(f.shape == (H, W, 3) for f in frames)
    for frame, (width, height) in zip(frames, sizes.values(), strict=True):
        photo = frame.max(axis=2) > 100  # the photo is bright, the bars black
        rows, cols = np.flatnonzero(photo.any(axis=1)), np.flatnonzero(photo.any(axis=0))
        shown_w, shown_h = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
        assert shown_w / shown_h == pytest.approx(width / height, rel=0.05)  # its own aspect
        assert abs((cols[0] + cols[-1]) / 2 - (W - 1) / 2) <= 1 and abs((rows[0] + rows[-1]) / 2 - (H - 1) / 2) <= 1


# Every sound track and the subtitles, or a note for what a container cannot take

TRACKS = [
    # (output, its streams, the note: None when everything is kept)
    (".mkv", [("video", "ffv1"), ("audio", "aac"), ("audio", "mp3"), ("subtitle", "ass")], None),
    (
        ".mp4",
        [("video", "h264"), ("audio", "aac"), ("audio", "mp3")],
        "note: the source's subtitles (ass) cannot be copied into .mp4; writing without them (.mkv keeps them)",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("suffix,kept,note", TRACKS, ids=[t[0] for t in TRACKS])
def test_sound_tracks_and_subtitles_are_kept_or_named(tmp_path, suffix, kept, note):
    make_tracks(tmp_path / "film.mkv")
    done = webcam("--source", "film.mkv", "--no-display", "--output", f"out{suffix}", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    import av

    with av.open(str(tmp_path / f"out{suffix}")) as container:
        assert [(s.type, s.codec.canonical_name) for s in container.streams] == kept
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert notes == ([note] if note else [])


# A long run without a window shows how far it is, on a terminal only


@pytest.mark.slow
@pytest.mark.parametrize("where", ["terminal", "pipe"])
def test_a_file_run_without_a_window_shows_progress_on_a_terminal_only(files, tmp_path, where):
    command = [sys.executable, str(ROOT / "webcam.py"), "--source", str(files / "clip.avi"), "--no-display"]
    command += ["--output", str(tmp_path / "out.mkv")]
    if where == "terminal":
        status, shown = on_terminal(command, cwd=tmp_path)
    else:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=HEADLESS, timeout=120)
        status, shown = done.returncode, done.stderr
    assert status == 0, shown
    bar = re.search(rf"\r{N}/{N} frames \[#{{24}}\] 100% +[\d.]+ fps  0:00 left", shown)
    assert (bar is not None) == (where == "terminal"), repr(shown)
    assert ("\r" in shown.replace("\r\n", "\n")) == (where == "terminal")  # a pipe gets plain lines only
    assert shown.replace("\r\n", "\n").split("\r")[-1].lstrip().startswith("done: frames=12")  # the bar was cleared


# --help, the README and the code agree on --background and --fourcc


@pytest.mark.slow
def test_help_says_what_background_and_fourcc_do(files, tmp_path):
    from lib.live.sinks import OPENCV_CODECS

    shown = " ".join(webcam("--help", cwd=tmp_path).stdout.split())
    assert "scaled to cover the frame (cropped, never stretched); implies --mode replace" in shown
    assert f"({', '.join(OPENCV_CODECS)}; no sound)" in shown  # every codec the code takes, and no other
    done = webcam("--source", str(files / "clip.avi"), "--no-display", "--background", str(files / "bg.png"),
                  "--output", "replaced.mkv", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    source, replaced = _frames(files / "clip.avi"), _frames(tmp_path / "replaced.mkv")
    # the noise is no person: the black background replaces nearly all of it
    assert np.mean(replaced) < 0.2 * np.mean(source)
