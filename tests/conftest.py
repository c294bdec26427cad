"""Shared fixtures: generated datasets in both layouts, and tiny model files.

Datasets are drawn, not downloaded: a bright ellipse (the "person") on a noisy background, so
a model can learn it in a few steps and a test knows the true mask exactly.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import gin  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lib.training.configurables  # noqa: E402,F401  (tests parse recipes naming every configurable)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_state():
    """Each test starts with no gin bindings and no Accelerate singleton from an earlier test."""
    from accelerate.state import AcceleratorState, PartialState

    gin.clear_config()
    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    yield
    gin.clear_config()
    AcceleratorState._reset_state(True)
    PartialState._reset_state()


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


@pytest.fixture
def aiseg_root(tmp_path) -> Path:
    return make_aisegment(tmp_path / "aiseg")


@pytest.fixture
def folder_root(tmp_path) -> Path:
    return make_folder(tmp_path / "folder")


TINY_MODEL = {"arch": "Unet", "encoder_name": "resnet18", "model_kwargs": {"decoder_channels": [16, 16, 8, 8, 8]}}


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
