"""Train a person-segmentation model: accelerate launch train.py --gin gin/unetpp.gin"""

import argparse

from lib.live.errors import UserError, cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
import lib.training.train
from lib.training.config import parse, parse_for_resume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gin", action="append", default=[], help="gin config file (repeatable)")
    parser.add_argument(
        "--gin-param", action="append", default=[], help="gin binding, e.g. train.epochs=5 (repeatable)"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue experiments/expN from its last checkpoint")
    args = parser.parse_args()
    if args.resume:
        parse_for_resume(args.resume, args.gin, args.gin_param)
    elif args.gin:
        parse(args.gin, args.gin_param)
    else:
        raise UserError("--gin is required, e.g. --gin gin/smoke.gin (or --resume experiments/expN)")
    lib.training.train.train(resume=args.resume)


if __name__ == "__main__":
    run_cli(main)
