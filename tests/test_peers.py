"""lib.tools.peers, lib.tools.compare and scripts/compare_peers.py: MediaPipe's pre/post-processing with a stand-in
interpreter (CI has no ai-edge-litert), the messages when the peer cannot run, and the script end
to end on generated data."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers import ROOT

from lib.live.errors import UserError
from lib.tools.compare import select_photos
from lib.tools.peers import LANDSCAPE_FILE, PEER_FILES, MediaPipeSelfie, MeetSegmentation, PPHumanSeg
from lib.training.data import make_splits
from scripts.compare_peers import main

PEERS = ROOT.parent / "shared" / "peers" / "mediapipe_selfie"
# few timing runs; one thread, as two torch threads crawl on a 2-core machine that is busy with something else
QUICK = ["--runs", "2", "--threads", "1"]


class FakeInterpreter:
    """Stands in for ai-edge-litert's Interpreter: its 'person probability' is the red channel of
    its input, so a BGR/RGB mix-up or a wrong size shows in the answer."""

    def __init__(self, height: int, width: int):
        self.height, self.width, self.inputs = height, width, []

    def get_input_details(self):
        return [{"index": 0, "shape": np.array([1, self.height, self.width, 3], np.int32)}]

    def get_output_details(self):
        return [{"index": 7}]

    def set_tensor(self, index, value):
        assert index == 0
        self.inputs.append(value.copy())

    def invoke(self):
        pass

    def get_tensor(self, index):
        assert index == 7
        return self.inputs[-1][..., :1]  # (1, H, W, 1) like the real model


def fake_peer(tmp_path, landscape: bool = True):
    (tmp_path / "selfie_segmentation.tflite").write_bytes(b"fake")
    if landscape:
        (tmp_path / LANDSCAPE_FILE).write_bytes(b"fake")
    fakes = {"selfie_segmentation.tflite": FakeInterpreter(256, 256), LANDSCAPE_FILE: FakeInterpreter(144, 256)}
    peer = MediaPipeSelfie(
        tmp_path / "selfie_segmentation.tflite", make_interpreter=lambda p: fakes[os.path.basename(p)]
    )
    return peer, fakes


def red_over_blue(height: int, width: int) -> np.ndarray:
    """BGR frame: red top half, blue bottom half."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[: height // 2] = (0, 0, 255)
    frame[height // 2 :] = (255, 0, 0)
    return frame


def test_input_is_rgb_in_unit_range_at_model_size_and_output_at_frame_size(tmp_path):
    peer, fakes = fake_peer(tmp_path)
    prob = peer(red_over_blue(100, 60))
    (x,) = fakes["selfie_segmentation.tflite"].inputs
    assert x.shape == (1, 256, 256, 3) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x[0, 10, 10], (1, 0, 0))  # red reaches the model as RGB
    assert prob.shape == (100, 60) and prob.dtype == np.float32
    assert prob[:45].min() > 0.99 and prob[55:].max() < 0.01  # red = "person" at the top, back in place
    assert peer.name and not fakes[LANDSCAPE_FILE].inputs


@pytest.mark.parametrize("landscape", [True, False])
def test_landscape_frames_use_the_landscape_model_when_it_is_there(tmp_path, landscape):
    peer, fakes = fake_peer(tmp_path, landscape)
    probs = peer.predict_many([red_over_blue(60, 100), red_over_blue(80, 80)])
    assert [p.shape for p in probs] == [(60, 100), (80, 80)]
    assert probs[0][:25].min() > 0.99 and probs[0][35:].max() < 0.01
    shapes = [x.shape for x in fakes["selfie_segmentation.tflite"].inputs]
    if landscape:
        assert [x.shape for x in fakes[LANDSCAPE_FILE].inputs] == [(1, 144, 256, 3)]
        assert shapes == [(1, 256, 256, 3)]  # the square frame
    else:
        assert shapes == [(1, 256, 256, 3)] * 2


def test_flip_tta_maps_the_mirrored_answer_back(tmp_path):
    peer, _ = fake_peer(tmp_path)
    frame = np.zeros((90, 70, 3), np.uint8)
    frame[:, :20] = (0, 0, 255)  # red left stripe: not mirror-symmetric
    plain, tta = peer.predict_many([frame], tta=False)[0], peer.predict_many([frame], tta=True)[0]
    np.testing.assert_allclose(tta, plain, atol=1e-5)
    assert plain[:, :15].min() > 0.99 and plain[:, 25:].max() < 0.01


def test_missing_litert_or_model_file_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        MediaPipeSelfie(tmp_path / "nope.tflite")
    (tmp_path / "m.tflite").write_bytes(b"fake")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(UserError, match="pip install ai-edge-litert; it is optional"):
        MediaPipeSelfie(tmp_path / "m.tflite")


def test_recipe_split_is_the_runs_split_and_limit_is_per_root(tmp_path, aiseg_root, folder_root):
    recipe = tmp_path / "r.gin"
    recipe.write_text(f"make_splits.roots = ['{aiseg_root}', '{folder_root}']\nmake_splits.split = (0.5, 0.25, 0.25)\n")
    pairs, what = select_photos(None, [str(recipe)], [], "test", None)
    made = make_splits(roots=[str(aiseg_root), str(folder_root)], split=(0.5, 0.25, 0.25))[0]["test"]
    assert pairs == made and len(pairs) == 4 and "test split" in what
    limited, _ = select_photos(None, [str(recipe)], [], "test", 1)
    assert limited == [pairs[0], pairs[2]]


def test_script_end_to_end_without_mediapipe(tmp_path, aiseg_root, folder_root, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    args = [
        "--ckpt",
        str(tiny_checkpoint),
        "--data",
        str(aiseg_root),
        "--data",
        str(folder_root),
        "--no-mediapipe",
        "--json",
        str(out / "peers.json"),
        "--picture",
        str(out / "peers.jpg"),
        *QUICK,
    ]
    main(args)
    printed = capsys.readouterr().out
    assert printed.startswith("$ python -m scripts.compare_peers --ckpt ")
    assert "| aiseg | tiny.pt (torch) | 8 |" in printed and "| folder | tiny.pt (torch) | 8 |" in printed
    assert "ms per 640x480 frame" in printed
    result = json.loads((out / "peers.json").read_text())["models"]["tiny.pt (torch)"]
    assert {r: m["n"] for r, m in result["by_root"].items()} == {str(aiseg_root): 8, str(folder_root): 8}
    picture = cv2.imread(str(out / "peers.jpg"))
    assert picture.shape == (4 * 200, 3 * 150, 3)  # 2 photos per root; photo, mask, blurred background


@pytest.mark.slow
def test_script_goes_on_without_the_mediapipe_file(tmp_path, aiseg_root, tiny_checkpoint):
    args = [
        "--ckpt",
        str(tiny_checkpoint),
        "--data",
        str(aiseg_root),
        "--limit",
        "2",
        *QUICK,
        "--mediapipe",
        str(tmp_path / "absent.tflite"),
        "--meet",
        str(tmp_path / "absent_meet.tflite"),
        "--pphumanseg",
        str(tmp_path / "absent.onnx"),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.compare_peers", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 3 and "absent.tflite does not exist" in notes[0]
    assert "absent_meet.tflite does not exist" in notes[1] and "absent.onnx does not exist" in notes[2]
    assert "| aiseg | tiny.pt (torch) | 2 |" in proc.stdout


@pytest.mark.skipif(not PEERS.is_dir(), reason="../shared/peers/mediapipe_selfie is not here (a fresh clone)")
def test_real_mediapipe_on_a_generated_frame():
    pytest.importorskip("ai_edge_litert")
    peer = MediaPipeSelfie(PEERS / "selfie_segmentation.tflite", threads=1)
    frame = cv2.resize(red_over_blue(8, 8), (640, 480))
    for f in (frame, np.ascontiguousarray(frame.transpose(1, 0, 2))):  # landscape model, then the general one
        prob = peer(f)
        assert prob.shape == f.shape[:2] and prob.dtype == np.float32
        assert 0.0 <= prob.min() and prob.max() <= 1.0


class FakeMeet(FakeInterpreter):
    """Meet's model gives two logits per pixel; here person = the red channel of its input."""

    def get_tensor(self, index):
        red = self.inputs[-1][..., :1]
        return np.concatenate([np.zeros_like(red), 20 * red - 10], axis=-1)  # (1, H, W, 2)


def test_meet_squashes_the_frame_and_softmaxes_channel_one(tmp_path):
    (tmp_path / "meet.tflite").write_bytes(b"fake")
    fake = FakeMeet(144, 256)
    peer = MeetSegmentation(tmp_path / "meet.tflite", make_interpreter=lambda p: fake)
    prob = peer(red_over_blue(100, 60))
    assert fake.inputs[0].shape == (1, 144, 256, 3) and prob.shape == (100, 60)
    assert prob[:45].min() > 0.99 and prob[55:].max() < 0.01
    with pytest.raises(UserError, match="Meet model .* does not exist"):
        MeetSegmentation(tmp_path / "nope.tflite")


PPHUMANSEG = ROOT / PEER_FILES["pphumanseg"]


@pytest.mark.skipif(not PPHUMANSEG.is_file(), reason="../shared/peers/pphumanseg is not here (a fresh clone)")
def test_pphumanseg_letterboxes_and_answers_at_the_frames_size():
    peer = PPHumanSeg(PPHUMANSEG, threads=1)
    person = cv2.imread(
        str(
            ROOT
            / "samples"
            / "fullbody"
            / "images"
            / sorted((ROOT / "samples" / "fullbody" / "images").iterdir())[0].name
        )
    )
    for frame in (person, cv2.resize(person, (640, 360))):
        prob = peer(frame)
        assert prob.shape == frame.shape[:2] and 0.0 <= prob.min() and prob.max() <= 1.0
    assert 0.05 < (peer(person) > 0.5).mean() < 0.8  # a person found, not the whole frame
