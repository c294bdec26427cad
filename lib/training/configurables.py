"""Every module with a gin configurable, imported once so a config file can name any of them
(and re-parsing a run's operative_config.gin works). Entry scripts that read gin import this.

It first checks that the training stack is installed: without gin-config, `import gin` would
find the repository's own gin/ folder (a namespace package) and fail with an AttributeError
that names no package; without torch, a ModuleNotFoundError deep in a traceback. What is missing
is raised as a UserError (importing a library never exits the process); an entry script imports
this module inside lib.live.errors.cli_errors, which prints it in one line and exits with 2.
"""

import importlib.util

import gin

from lib.live.errors import UserError

FULL_INSTALL = "pip install -r requirements.txt"


def _missing() -> str | None:
    if not hasattr(gin, "parse_config_files_and_bindings"):  # the gin/ folder of configs, not gin-config
        return "gin-config"
    for package in ("torch", "segmentation_models_pytorch", "accelerate", "albumentations"):
        if importlib.util.find_spec(package) is None:
            return package
    return None


if missing := _missing():
    # before any traceback can start: an install problem, not a bug
    raise UserError(f"{missing} is not installed: {FULL_INSTALL} (a live-only install runs webcam.py only)")

# the torch loaders for lib.live.segmenter.load_segmenter come with them (lib.training.inference)
from lib.training import data, inference, losses, model, train  # noqa: E402,F401
