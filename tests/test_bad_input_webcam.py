"""webcam.py given bad values, bad paths, failing disks, devices and pipes, and signals, run as a
user runs it (a subprocess).

Per case: the exit status, one line naming the flag or file, no traceback, and nothing the user
had (an earlier output, a folder's files) changed or left half-written. A full disk and a
read-only folder are real tmpfs mounts (root only; skipped with the reason elsewhere). What
webcam.py reads and shows (names that are not UTF-8, mixed photos, sound tracks, the progress bar,
--help): test_bad_input_webcam_sources.py.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import (
    HEADLESS,
    ROOT,
    WEBCAM_CLIP,
    check_one_line,
    count_frames,
    device_node,
    node_kind,
    snapshot,
    video_frames,
    webcam,
)

from lib.live.errors import UserError
from lib.live.files import OutputTaken, check_output_file, publish, write_text
from lib.live.stop import Stopped, StopSignals

W, H, N = WEBCAM_CLIP

# the cases that run webcam.py as a subprocess are marked slow; the in-process ones are not


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
    ((*CLIP, "--landscape-size", "384x288"), "--landscape-size 384x288: expected a box wider than tall, e.g. 288x384"),
    ((*CLIP, "--input-size", "200x150"), "--input-size 200x150: both sides must be positive multiples of 32"),
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
    assert 0 < had < N and len(video_frames(tmp_path / "cut_out.avi")) == had


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
