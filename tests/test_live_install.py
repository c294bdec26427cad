"""The live-only install (requirements-live.txt): webcam.py runs an .onnx model with none of the
training stack. A sitecustomize on PYTHONPATH makes every import of those packages fail (and
writes down each attempt), as in a venv made from requirements-live.txt alone, where the
repository's gin/ folder is all that `import gin` can find."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TRAINING_STACK, make_talk, streams

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = f"""
import importlib.abc, importlib.machinery, os
BLOCKED = {TRAINING_STACK!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in BLOCKED:
            return None
        with open(os.environ["BLOCKED_LOG"], "a") as log:
            log.write(name + "\\n")
        if top == "gin":  # gin-config missing: only the repository's gin/ folder of configs is left
            return importlib.machinery.PathFinder.find_spec(name, [{str(ROOT)!r}])
        raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: live-only install)", name=name)

import sys
sys.meta_path.insert(0, Blocker())
"""

pytestmark = pytest.mark.slow  # subprocesses


@pytest.fixture
def live_env(tmp_path) -> dict:
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(BLOCKER)
    return {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "blocker"),
        "BLOCKED_LOG": str(tmp_path / "blocked.txt"),
        "DISPLAY": "",
    }


def python(*args: str, env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_the_blocker_blocks(live_env):
    done = python("-c", "import torch", env=live_env)
    assert done.returncode == 1 and "blocked: live-only install" in done.stderr


def test_webcam_on_the_shipped_onnx_model_keeps_the_sound_without_the_training_stack(live_env, tmp_path):
    talk = make_talk(tmp_path / "talk.mp4")
    out = tmp_path / "out.mp4"
    done = python("webcam.py", "--source", str(talk), "--no-display", "--output", str(out), env=live_env)
    assert done.returncode == 0, done.stderr
    assert not Path(live_env["BLOCKED_LOG"]).exists()  # nothing of the training stack was even asked for
    got = streams(out)
    assert got["video"][0] == "h264" and got["audio"][0] == "aac"
    assert got["audio"][1] == pytest.approx(streams(talk)["audio"][1], abs=0.1)


@pytest.mark.parametrize(
    "args,names",
    [
        (("--ckpt", "models/lite.pt"), "lite.pt (a torch model file) needs the training stack"),
        (("--backend", "torch"), "--backend torch needs the training stack"),
    ],
)
def test_what_needs_the_full_stack_says_so_in_one_line(live_env, args, names):
    done = python("webcam.py", "--source", "samples/fullbody/images/0001.jpg", "--no-display", "--benchmark", *args,
                  env=live_env)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and names in lines[0], done.stderr
    assert "pip install -r requirements.txt" in lines[0] and "Traceback" not in done.stderr


def test_the_repository_gin_folder_never_stands_in_for_gin_config(live_env):
    done = python("train.py", "--gin", "gin/smoke.gin", env=live_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "error: gin-config is not installed: pip install -r requirements.txt (a live-only install runs webcam.py only)"
    )
