"""Train a person-segmentation model: accelerate launch train.py --gin gin/unetpp.gin"""

import argparse
from pathlib import Path

import gin
import lib
from lib.errors import UserError, run_cli


def parse_config(gin_files: list[str], gin_params: list[str]) -> None:
    for path in gin_files:
        if not Path(path).is_file():
            raise UserError(f"--gin {path}: no such file (configs live in gin/)")
    try:
        gin.parse_config_files_and_bindings(gin_files, gin_params)
    except (ValueError, KeyError, SyntaxError) as error:  # unknown configurable or parameter, bad syntax
        raise UserError(f"gin config: {str(error).strip().splitlines()[0]}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gin", action="append", default=[], help="gin config file (repeatable)")
    parser.add_argument(
        "--gin-param", action="append", default=[], help="gin binding, e.g. train.epochs=5 (repeatable)"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue experiments/expN from its last checkpoint")
    args = parser.parse_args()
    if args.resume:
        run_config = Path(args.resume) / "operative_config.gin"
        if not run_config.is_file():
            raise UserError(f"--resume {args.resume}: {run_config} is missing (did the run reach its first step?)")
        # The run's own config first, so a resumed run is the same run; flags may still override.
        parse_config([str(run_config), *args.gin], [*args.gin_param, f"train.resume = '{args.resume}'"])
    elif not args.gin:
        raise UserError("--gin is required, e.g. --gin gin/smoke.gin (or --resume experiments/expN)")
    else:
        parse_config(args.gin, args.gin_param)
    lib.train.train()


if __name__ == "__main__":
    run_cli(main)
