"""A data root's pairs split into train, val and test, deterministically, and the split lists a run
folder keeps (splits/*.tsv: one pair a line, absolute paths).

Split lists are UTF-8 text; a file name that is not UTF-8 keeps its bytes as they are on disk
(surrogateescape), so the list names the same files when read back."""

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

from lib.live.errors import UserError, shown
from lib.live.files import write_atomic
from lib.training.pairs import Pair, scan_root

SPLIT_NAMES = ("train", "val", "test")
DATA_HINT = (
    "Point make_splits.roots at your data, e.g. --gin-param \"make_splits.roots=['/data/people']\": "
    "each root either the AISegment layout (clip_img/ + matting/) or images/ + masks/ (README, Data layouts)"
)


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


@dataclasses.dataclass(frozen=True)
class DataRecipe:
    """What a run trains on: data roots, the split and its seed. Plain data, recorded in the run
    folder (run.json) and in every model file, so the same photos are found again from plain
    arguments: the split is deterministic."""

    roots: tuple[str, ...]
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    def to_dict(self) -> dict:
        return {"roots": list(self.roots), "split": list(self.split), "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict) -> "DataRecipe":
        return cls(tuple(d["roots"]), tuple(d.get("split", cls.split)), int(d.get("seed", 0)))

    def without_missing_roots(self) -> "DataRecipe":
        """For scoring: the recipe without the roots a clone lacks (a root made by this project, such as
        labelled groups: models/README.md says how), when some are here. Each root is split on its
        own, so the other roots' photos are the same without it. Training keeps every root."""
        missing = [root for root in self.roots if not Path(root).exists()]
        if not missing or len(missing) == len(self.roots):
            return self  # nothing to leave out, or nothing left: make() names the first missing root
        for root in missing:
            print(f"note: data root {root} is not here (models/README.md says how it was made); scored without it")
        return dataclasses.replace(self, roots=tuple(r for r in self.roots if r not in missing))

    def make(self) -> tuple[dict[str, list[Pair]], list[str]]:
        """Scan each data root and split it on its own, so every split has the same mix of kinds.

        Returns the splits and one report per root that had files left out.
        """
        if not self.roots:
            raise UserError("make_splits.roots is empty: give at least one data folder")
        splits = {name: [] for name in SPLIT_NAMES}
        reports = []
        for root in self.roots:
            try:
                scan = scan_root(root)
            except UserError as error:
                raise UserError(f"{error}. {DATA_HINT}") from None
            if scan.report():
                reports.append(scan.report())
            reports += [f"warning: {note}" for note in scan.notes]
            if not scan.pairs:
                raise UserError(
                    f"data root {root} ({scan.layout} layout) has no usable image/mask pairs"
                    + (f":\n{scan.report()}" if scan.report() else "")
                )
            for name, pairs in split_pairs(scan.pairs, self.split, self.seed).items():
                splits[name] += pairs
        if not splits["train"]:
            raise UserError(f"make_splits.split={tuple(self.split)} leaves no training pairs")
        return splits, reports
