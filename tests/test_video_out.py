"""Video out through PyAV: H.264 where it can, and the source's sound kept (copied, cut where the
video ends); the camera asked for its best mode. The talking clip is generated here: a few frames
and a sine tone."""

from pathlib import Path

import av
import numpy as np
import pytest
from helpers import FPS, SECONDS, bright_segmenter, make_talk, streams

from lib.live.loop import Options, run
from lib.live.sources import CaptureSource


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    return make_talk(tmp_path_factory.mktemp("talk") / "talk.mp4")


def opts(**kw) -> Options:
    return Options(**{"display": False, **kw})


@pytest.mark.parametrize(
    "suffix,video_codec", [(".mp4", "h264"), (".mov", "h264"), (".mkv", "ffv1"), (".avi", "mjpeg")]
)
def test_the_sound_is_copied_into_every_container(tmp_path, talk, suffix, video_codec):
    out = tmp_path / f"talk_blurred{suffix}"
    stats = run(opts(source=str(talk), output=str(out)), bright_segmenter())
    got, source = streams(out), streams(talk)
    assert stats.frames == SECONDS * FPS
    assert got["video"][0] == video_codec and got["video"][1] == pytest.approx(SECONDS, abs=0.1)
    assert got["audio"][0] == "aac"  # copied as it was, not re-encoded
    assert got["audio"][1] == pytest.approx(source["audio"][1], abs=0.1)


def test_a_shorter_run_cuts_the_sound_where_the_video_ends(tmp_path, talk):
    out = tmp_path / "first_second.mp4"
    run(opts(source=str(talk), output=str(out), max_frames=FPS), bright_segmenter())
    got = streams(out)
    assert got["video"][1] == pytest.approx(1.0, abs=0.1) and got["audio"][1] == pytest.approx(1.0, abs=0.1)


def test_odd_frame_sizes_are_padded_for_h264(tmp_path):
    from lib.tools.livebench import ClipSource

    frames = [np.full((45, 63, 3), 100, np.uint8)] * 3
    out = tmp_path / "odd.mp4"
    run(opts(output=str(out)), bright_segmenter(), ClipSource(frames))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 46) and stream.frames == 3


class FakeCamera:
    """cv2.VideoCapture of a camera that takes MJPG and 1280x720 but delivers 25 fps, not 30."""

    def __init__(self, target):
        self.props, self.asked = {}, []

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def set(self, prop, value):
        self.asked.append((prop, value))
        self.props[prop] = 25.0 if prop == 5 else value  # 5: CAP_PROP_FPS

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def read(self):
        return True, np.zeros((int(self.props.get(4, 480)), int(self.props.get(3, 640)), 3), np.uint8)

    def release(self):
        pass


def test_the_camera_is_asked_for_mjpg_size_and_fps_and_says_what_it_delivers(monkeypatch, capsys):
    import cv2

    import lib.live.sources

    monkeypatch.setattr(lib.live.sources, "quiet_capture", FakeCamera)
    camera = CaptureSource(0, live=True, size=(1280, 720), fps=30)
    asked = camera.cap.asked
    assert asked[0] == (cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))  # before the size: most drivers need it
    assert (cv2.CAP_PROP_FRAME_WIDTH, 1280) in asked and (cv2.CAP_PROP_FPS, 30) in asked
    line = capsys.readouterr().err.strip()
    assert line == "camera 0: 1280x720 at 25 fps, MJPG (asked for 1280x720, 30 fps, MJPG)"
