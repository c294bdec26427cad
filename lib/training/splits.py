"""A data root's pairs split into train, val and test, deterministically, and the split lists a run
folder keeps (splits/*.tsv: one pair a line, absolute paths).

Split lists are UTF-8 text; a file name that is not UTF-8 keeps its bytes as they are on disk
(surrogateescape), so the list names the same files when read back."""

import random
from collections.abc import Sequence
from pathlib import Path

from lib.live.errors import UserError, shown
from lib.live.files import write_atomic
from lib.training.pairs import Pair

SPLIT_NAMES = ("train", "val", "test")


def split_pairs(pairs: list[Pair], split: Sequence[float], seed: int) -> dict[str, list[Pair]]:
    """Deterministic train/val/test split of one root's pairs.

    `split` is (train, val, test) as counts (the reference's 1360, 120, 120) or as fractions
    summing to at most 1. Test is taken first, then val, so growing the training set never
    moves an image into or out of the test set.
    """
    if len(split) != 3 or any(s < 0 for s in split):
        raise UserError(f"make_splits.split={tuple(split)}: expected three non-negative numbers (train, val, test)")
    n = len(pairs)
    if all(float(s).is_integer() for s in split) and sum(split) > 1:
        counts = [int(s) for s in split]
        if sum(counts) > n:
            raise UserError(
                f"make_splits.split={tuple(split)} asks for {sum(counts)} pairs but "
                f"{pairs[0].root if pairs else 'the data'} has {n}; "
                "give smaller counts or fractions like (0.8, 0.1, 0.1)"
            )
    else:
        if sum(split) > 1 + 1e-6:
            raise UserError(f"make_splits.split={tuple(split)}: fractions must sum to at most 1")
        counts = [round(s * n) for s in split]
        for i in (1, 2):  # a requested val/test split is never silently empty
            if split[i] > 0 and counts[i] == 0 and n >= 3:
                counts[i] = 1
        counts[0] = min(counts[0], n - counts[1] - counts[2])
    order = sorted(pairs, key=lambda p: p.image)
    random.Random(seed).shuffle(order)
    n_train, n_val, n_test = counts
    return {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val : n_test + n_val + n_train],
    }


def write_split(path: Path, pairs: list[Pair]) -> None:
    lines = ["# root\timage\tmask\tlayout\tignore"] + [
        f"{p.root}\t{p.image}\t{p.mask}\t{p.layout}\t{p.ignore}" for p in pairs
    ]
    text = "\n".join(lines) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8", errors="surrogateescape"))


def read_split(path: Path) -> list[Pair]:
    if not path.is_file():
        raise UserError(f"split list {path} does not exist (written by train.py into the run folder)")
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="surrogateescape").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) not in (4, 5) or fields[3] not in ("aisegment", "folder"):
            raise UserError(f"{path}, line {number}: expected root, image, mask, layout (and ignore) separated by tabs")
        pairs.append(Pair(*fields))
    missing = [p for p in pairs if not p.image_path.is_file()]
    if missing:
        first = missing[0]
        cause = (
            f"its paths are relative to the directory train.py ran in (not {Path.cwd()}): run from there"
            if not Path(first.root).is_absolute()
            else "the data was moved or deleted"
        )
        raise UserError(
            f"{path} lists {len(missing)} images that are not there (e.g. {shown(first.image_path)}): {cause}, "
            "or pass --data ROOT to score the data where it is now"
        )
    return pairs
