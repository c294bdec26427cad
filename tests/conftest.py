"""Shared fixtures: generated datasets in both layouts, and tiny model files (helpers.py draws them).

Datasets are drawn, not downloaded: a bright ellipse (the "person") on a noisy background, so
a model can learn it in a few steps and a test knows the true mask exactly.
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
from helpers import TINY_MODEL, make_aisegment, make_folder, reset  # noqa: E402

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
