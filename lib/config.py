"""Reading gin configs with messages that name the file or binding at fault."""

import re
from pathlib import Path

import gin

from lib.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
# `include 'gin/lite.gin'` inside a recipe resolves from the project, whatever the working directory
gin.add_config_file_search_path(str(ROOT))


def parse(gin_files: list[str], gin_params: list[str]) -> None:
    for path in gin_files:
        if not Path(path).is_file():
            raise UserError(f"--gin {path}: no such file (configs live in gin/)")
    try:
        gin.parse_config_files_and_bindings(gin_files, gin_params)
    except (ValueError, KeyError, SyntaxError, TypeError) as error:  # unknown name or parameter, bad syntax
        raise UserError(f"gin config: {_explain(str(error).strip().splitlines()[0])}") from None


PASSED_BY_THE_PROGRAM = {"train.resume": "pass --resume RUN_DIR to train.py"}


def _explain(message: str) -> str:
    """gin's words for a binding of an argument the program always passes itself, made plain."""
    found = re.search(r"Configurable '(\w+)' has denylisted kwarg '(\w+)'", message)
    if not found:
        return message
    name = f"{found[1]}.{found[2]}"
    hint = PASSED_BY_THE_PROGRAM.get(name, "it is derived from the rest of the configuration")
    return f"{name} cannot be set in a gin file or --gin-param: the program passes it itself ({hint})"


def parse_for_resume(run_dir: str, gin_files: list[str], gin_params: list[str]) -> None:
    """The run's own operative config first, so a resumed run is the same run; flags may still override.

    The run folder itself reaches train() as its `resume` argument, never as a binding.
    """
    run_config = Path(run_dir) / "operative_config.gin"
    if not run_config.is_file():
        raise UserError(f"--resume {run_dir}: {run_config} is missing (did the run reach its first step?)")
    # runs written before `resume` stopped being a gin parameter recorded `train.resume = None`
    lines = [line for line in run_config.read_text().splitlines() if not line.startswith("train.resume ")]
    try:
        gin.parse_config(lines)
    except (ValueError, KeyError, SyntaxError, TypeError) as error:
        raise UserError(f"{run_config}: {str(error).strip().splitlines()[0]}") from None
    parse(gin_files, gin_params)
