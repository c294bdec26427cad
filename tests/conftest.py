"""Shared fixtures: generated datasets in both layouts, tiny model files (helpers.py draws them),
and the inputs the webcam bad-input tests give webcam.py.

Datasets are drawn, not downloaded: a bright ellipse (the "person") on a noisy background, so
a model can learn it in a few steps and a test knows the true mask exactly.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import TINY_MODEL, WEBCAM_CLIP, make_aisegment, make_folder, reset  # noqa: E402

import lib.training.configurables  # noqa: E402,F401  (tests parse recipes naming every configurable)


@pytest.fixture(autouse=True)
def clean_state():
    """Each test starts with no gin bindings and no Accelerate singleton from an earlier test."""
    reset()
    yield
    reset()


@pytest.fixture
def aiseg_root(tmp_path) -> Path:
    return make_aisegment(tmp_path / "aiseg")


@pytest.fixture
def folder_root(tmp_path) -> Path:
    return make_folder(tmp_path / "folder")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny Unet saved as a self-describing checkpoint (input 64x64)."""
    import torch

    from lib.live.model_info import ModelInfo, ModelSpec
    from lib.live.preprocess import Preprocess
    from lib.training.model import create, save_checkpoint

    torch.manual_seed(0)
    model = create(TINY_MODEL["arch"], TINY_MODEL["encoder_name"], TINY_MODEL["model_kwargs"])
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    info = ModelInfo(ModelSpec(**TINY_MODEL), Preprocess(input_size=(64, 64)), {"note": "untrained"})
    save_checkpoint(path, model.eval(), info)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """What the webcam bad-input tests give webcam.py (one per test module): clip.avi (noise, lossless:
    it does not compress), a truncated copy, a 1x1 photo, a background, an earlier video, a folder with a file."""
    folder = tmp_path_factory.mktemp("inputs")
    W, H, N = WEBCAM_CLIP
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
