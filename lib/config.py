"""Reading gin configs with messages that name the file or binding at fault."""

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
        raise UserError(f"gin config: {str(error).strip().splitlines()[0]}") from None


def parse_for_resume(run_dir: str, gin_files: list[str], gin_params: list[str]) -> None:
    """The run's own operative config first, so a resumed run is the same run; flags may still override."""
    run_config = Path(run_dir) / "operative_config.gin"
    if not run_config.is_file():
        raise UserError(f"--resume {run_dir}: {run_config} is missing (did the run reach its first step?)")
    parse([str(run_config), *gin_files], [*gin_params, f"train.resume = '{run_dir}'"])
