"""Images per second the training input pipeline delivers, with no model: decode + augment + batch.

On the GPU machine the loader must outrun the GPU (~600-1000 img/s for these recipes on an
H200, ../shared/STACK_NOTES.md); measure the pipeline per worker here, where it runs alone.

    python -m scripts.benchmark_loader ../shared/data/pfcn_aisegment ../shared/data/ccp --workers 2
    python -m scripts.benchmark_loader .pack/pfcn_aisegment .pack/ccp --workers 2
"""

import argparse
import os
import time

from lib.live.errors import cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
from lib.training.data import build_dataloaders, make_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--input-size", type=int, nargs=2, default=(384, 288), metavar=("H", "W"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    splits, _ = make_splits(roots=args.roots)
    loader, _, _ = build_dataloaders(splits, tuple(args.input_size), args.batch_size, num_workers=args.workers)
    batches = iter(loader)
    next(batches)  # worker start-up is not the steady state
    start, images = time.perf_counter(), 0
    for _, batch in zip(range(args.batches), batches, strict=False):
        images += len(batch["image"])
    seconds = time.perf_counter() - start
    rate = images / seconds
    size = f"{args.input_size[0]}x{args.input_size[1]}"
    print(
        f"{images} images in {seconds:.1f} s: {rate:.1f} img/s with {args.workers} workers "
        f"({rate / max(1, args.workers):.1f} per worker), input {size}"
    )


if __name__ == "__main__":
    run_cli(main)
