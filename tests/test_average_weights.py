"""Averaging checkpoints of one network (model soup, WiSE-FT): scripts/average_weights.py."""

import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_MODEL

from lib.live.errors import UserError
from lib.live.model_info import ModelInfo, ModelSpec
from lib.live.preprocess import Preprocess
from lib.training.model import average_checkpoints, create, load_checkpoint, save_checkpoint

INFO = ModelInfo(ModelSpec(**TINY_MODEL), Preprocess(input_size=(64, 64)))


def tiny(path, seed: int, spec=TINY_MODEL):
    torch.manual_seed(seed)
    model = create(spec["arch"], spec["encoder_name"], spec["model_kwargs"])
    with torch.no_grad():  # batch-norm statistics that differ between the two, so their mean is checked too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    save_checkpoint(path, model.eval(), ModelInfo(ModelSpec(**spec), INFO.prep, {"seed": seed}))
    return model.state_dict()


def test_the_average_is_the_weighted_mean_of_every_weight(tmp_path):
    a, b = tiny(tmp_path / "a.pt", 0), tiny(tmp_path / "b.pt", 1)
    model, info = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], [3, 1])
    state = model.state_dict()
    for name, value in state.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a[name] + 0.25 * b[name], atol=1e-6), name
    assert any(not torch.equal(state[n], a[n]) for n in a if a[n].is_floating_point())
    assert [s["weight"] for s in info.meta["averaged_from"]] == [0.75, 0.25]
    only_a, _ = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"], [1, 0])
    assert all(torch.allclose(only_a.state_dict()[n], a[n]) for n in a if a[n].is_floating_point())


def test_checkpoints_of_other_networks_or_bad_weights_are_refused(tmp_path):
    tiny(tmp_path / "a.pt", 0)
    other = TINY_MODEL | {"model_kwargs": {"decoder_channels": [16, 16, 8, 8, 4]}}
    tiny(tmp_path / "c.pt", 2, other)
    with pytest.raises(UserError, match="c.pt: network .* differs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    with pytest.raises(UserError, match="one weight per checkpoint"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "a.pt"], [1, -1])
    with pytest.raises(UserError, match="two or more"):
        average_checkpoints([tmp_path / "a.pt"])


def test_the_script_writes_a_checkpoint_and_overwrites_nothing(tmp_path):
    tiny(tmp_path / "a.pt", 0)
    tiny(tmp_path / "b.pt", 1)
    out = tmp_path / "soup.pt"
    command = [sys.executable, "-m", "scripts.average_weights", "--ckpt", str(tmp_path / "a.pt")]
    command += ["--ckpt", str(tmp_path / "b.pt"), "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "0.500" in done.stdout and out.is_file()
    load_checkpoint(out)  # an ordinary checkpoint
    before = out.read_bytes()
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "exists already" in again.stderr and "Traceback" not in again.stderr
    assert out.read_bytes() == before
