"""The fast guard of the live install: every module of lib.live imports with the training stack
(torch, gin, smp, albumentations, timm, accelerate, ...) made unimportable, and a module that
reaches for it is named. One subprocess, about a second; tests/test_live_install.py runs the
real thing (webcam.py in a live-only environment) and is slow."""

import importlib
import subprocess
import sys
import types

import pytest
from helpers import ROOT, TRAINING_STACK

from lib.live.errors import UserError

IMPORT_EVERY_LIVE_MODULE = f"""
import importlib, importlib.abc, pkgutil, sys, traceback
BLOCKED = {TRAINING_STACK!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the live install has none)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
import lib.live
for module in pkgutil.walk_packages(lib.live.__path__, "lib.live."):
    try:
        importlib.import_module(module.name)
    except ImportError as error:
        # the module whose own import statement reached for it: the innermost frame under lib/live
        frames = [f for f in traceback.extract_tb(error.__traceback__) if "/lib/live/" in f.filename]
        culprit = frames[-1].filename.split("/lib/live/")[1][:-3].replace("/", ".") if frames else module.name
        print(f"lib.live.{{culprit}} imports {{error.name}} (line {{frames[-1].lineno if frames else '?'}})")
    else:
        print(f"ok {{module.name}}")
"""


def test_every_live_module_imports_without_the_training_stack():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_LIVE_MODULE], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    imported = [line[3:] for line in done.stdout.splitlines() if line.startswith("ok ")]
    reached = sorted({line for line in done.stdout.splitlines() if not line.startswith("ok ")})
    assert not reached, "the live install has no training stack, yet " + "; ".join(reached)
    assert {"lib.live.loop", "lib.live.segmenter", "lib.live.compose", "lib.live.preprocess"} <= set(imported)


def test_the_training_stack_check_raises_and_never_exits(monkeypatch):
    """lib.training.configurables without gin-config (only the repository's gin/ folder to import):
    a UserError with the line entry scripts print (cli_errors), not an exit of the importing process."""
    monkeypatch.setitem(sys.modules, "gin", types.ModuleType("gin"))
    monkeypatch.delitem(sys.modules, "lib.training.configurables")
    says = r"^gin-config is not installed: pip install -r requirements.txt \(a live-only install runs webcam.py only\)$"
    with pytest.raises(UserError, match=says):
        importlib.import_module("lib.training.configurables")
