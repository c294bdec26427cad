"""webcam.py given what it reads, run as a user runs it (a subprocess): file names that are not
UTF-8 (and the shared image reader and writer that take them), photos of mixed sizes, sound tracks
and subtitles; and what a run shows: the progress bar on a terminal only, --help on --background
and --fourcc. Bad values, paths, disks, devices and signals: test_bad_input_webcam.py.
"""

import os
import re
import subprocess
import sys
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
    make_tracks,
    on_terminal,
    snapshot,
    video_frames,
    webcam,
)

from lib.live.errors import UserError
from lib.live.files import write_image
from lib.live.preprocess import read_frame, read_image

W, H, N = WEBCAM_CLIP

# the cases that run webcam.py as a subprocess are marked slow; the in-process ones are not


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
    frames = video_frames(tmp_path / name)
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
    source, replaced = video_frames(files / "clip.avi"), video_frames(tmp_path / "replaced.mkv")
    # the noise is no person: the black background replaces nearly all of it
    assert np.mean(replaced) < 0.2 * np.mean(source)
