"""Training images/s of a recipe on this machine: the loader alone, the model step alone, both.

The training loop's throughput is bounded by the slower of its two halves, and on a CPU they
share the same cores. This prints all three, so a change can be judged where it acts:

    python -m scripts.benchmark_train --gin gin/lite.gin --steps 8
    python -m scripts.benchmark_train --gin gin/lite.gin --gin-param "build_dataloaders.cache_dir=None"
    python -m scripts.benchmark_train --gin gin/lite.gin --gin-param "train.channels_last=True" --only model

A good run ends with one line per part, e.g. `both: 10.6 img/s (batch 8, 256x192, 1 workers, 2 threads,
channels_last, decoded cache)`.
"""

import argparse
import itertools
import time

import gin
import torch

from lib.live.errors import cli_errors, run_cli

with cli_errors():  # the training stack not installed: one line, exit status 2
    import lib.training.configurables  # noqa: F401  (checks the training stack, registers every gin configurable)
import lib.training.data
import lib.training.losses
import lib.training.model
from lib.training.config import parse


def _loader_rate(loader, steps: int) -> tuple[float, int]:
    batches = iter(loader)
    next(batches)  # worker start-up and the cache's first fill are not the steady state
    start, images = time.perf_counter(), 0
    for batch in itertools.islice(batches, steps):
        images += len(batch["image"])
    return images / (time.perf_counter() - start), images


def _step(model, optimizer, loss_fn, batch, memory_format) -> None:
    loss = loss_fn(model(batch["image"].contiguous(memory_format=memory_format)), batch["mask"])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gin", action="append", default=[], required=True, help="recipe (repeatable)")
    parser.add_argument("--gin-param", action="append", default=[], help="binding (repeatable)")
    parser.add_argument("--steps", type=int, default=8, help="timed batches per part (after one warm-up)")
    parser.add_argument("--only", choices=("loader", "model", "both"), action="append", help="default: all three")
    args = parser.parse_args()
    parse(args.gin, args.gin_param)
    parts = args.only or ["loader", "model", "both"]

    splits, _ = lib.training.data.make_splits()
    train_dl, _, prep = lib.training.data.build_dataloaders(splits)
    channels_last = gin.query_parameter("train.channels_last") if _bound("train.channels_last") else False
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model, _ = lib.training.model.build_model()
    model = model.to(memory_format=memory_format).train()
    loss_fn = lib.training.losses.build_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    transform = train_dl.dataset.transform
    size = transform.early_size if transform.early_epochs else prep.input_size  # epoch 0 is what is timed
    setting = (
        f"batch {train_dl.batch_size}, {size[0]}x{size[1]}, {train_dl.num_workers} workers, "
        f"{torch.get_num_threads()} threads{', channels_last' if channels_last else ''}"
        f"{', decoded cache' if train_dl.dataset.cache else ''}"
    )

    if "loader" in parts:
        rate, _ = _loader_rate(train_dl, args.steps)
        print(f"loader: {rate:.1f} img/s ({setting})", flush=True)
    if "model" in parts:
        batch = next(iter(train_dl))
        _step(model, optimizer, loss_fn, batch, memory_format)  # warm-up: allocations, oneDNN kernels
        start = time.perf_counter()
        for _ in range(args.steps):
            _step(model, optimizer, loss_fn, batch, memory_format)
        rate = args.steps * len(batch["image"]) / (time.perf_counter() - start)
        print(f"model: {rate:.1f} img/s ({setting})", flush=True)
    if "both" in parts:
        batches = iter(train_dl)
        _step(model, optimizer, loss_fn, next(batches), memory_format)
        start, images = time.perf_counter(), 0
        for batch in itertools.islice(batches, args.steps):
            _step(model, optimizer, loss_fn, batch, memory_format)
            images += len(batch["image"])
        print(f"both: {images / (time.perf_counter() - start):.1f} img/s ({setting})", flush=True)


def _bound(name: str) -> bool:
    try:
        gin.query_parameter(name)
        return True
    except ValueError:
        return False


if __name__ == "__main__":
    run_cli(main)
