"""Which photos belong to a model: the one answer for evaluate.py, export.py and scripts.ship_model.

A model file says where it came from (its description's meta, lib.live.model_info): `run_dir`, the
run folder whose split lists name its photos; `data`, its recipe's roots, split and seed (a split
made again from them is the same split); `recipe`, the gin file of a model shipped before files
carried `data`. A shipped model has no run folder (a clone has no experiments/), so its photos are
its recipe's split made again.
"""

from pathlib import Path

from lib import ROOT
from lib.live.errors import UserError
from lib.live.model_info import ModelInfo
from lib.training.data import DataRecipe, recipe_of_files
from lib.training.pairs import Pair, scan_root
from lib.training.run_folder import load_splits
from lib.training.splits import SPLIT_NAMES, read_split


def find_run_dir(model_path: Path, info: ModelInfo) -> Path | None:
    """The run folder that wrote this model: recorded in its metadata, or two levels up."""
    candidates = [Path(info.meta.get("run_dir", "")), model_path.resolve().parent.parent]
    return next((c for c in candidates if str(c) not in ("", ".") and (c / "splits").is_dir()), None)


def run_splits(model_path: Path, info: ModelInfo) -> tuple[Path | None, dict[str, list[Pair]]]:
    """The run folder that wrote this model and its split lists; (None, {}) where it is not found."""
    run_dir = find_run_dir(Path(model_path), info)
    return (run_dir, load_splits(run_dir)) if run_dir is not None else (None, {})


def split_of(model_path: Path, info: ModelInfo, split: str) -> tuple[list[Pair], Path | None]:
    """A model's photos of one split ('all': every split): its run's split lists, or, for a shipped
    model whose run folder is elsewhere, its recipe's split made again (models/README.md).
    Returns the pairs and the run folder (None for a split made again)."""
    names = SPLIT_NAMES if split == "all" else (split,)
    run_dir = find_run_dir(model_path, info)
    recipe, source = recipe_of(info)
    if run_dir is None and recipe is not None:
        recipe = recipe.without_missing_roots()
        splits, reports = recipe.make()
        for report in reports:
            print(report)
        print(f"photos: the {split} split of {source}, made again from its roots, fractions and seed")
        return [pair for name in names for pair in splits[name]], None
    if run_dir is None:
        raise UserError(
            f"{model_path}: no run folder with split lists found (looked in its metadata and "
            f"{model_path.resolve().parent.parent}/splits); pass --data ROOT to score a data folder"
        )
    pairs = []
    for name in names:
        path = run_dir / "splits" / f"{name}.tsv"
        if not path.is_file():
            raise UserError(
                f"--split {split}: the run {run_dir} never wrote {path.name} (found: "
                f"{sorted(p.name for p in (run_dir / 'splits').glob('*.tsv'))})"
            )
        pairs += read_split(path)
    if not pairs:
        raise UserError(f"--split {split}: the run {run_dir} has no pairs in that split")
    return pairs, run_dir


def recipe_of(info: ModelInfo) -> tuple[DataRecipe | None, str]:
    """The data a model's run trained on, from its file alone: the roots, split and seed it carries
    (`data`), or those of the recipe it names (`recipe`, files shipped before they carried `data`)."""
    if info.meta.get("data"):
        return DataRecipe.from_dict(info.meta["data"]), info.meta.get("recipe", "its run")
    recipe = ROOT / info.meta.get("recipe", "no recipe")
    if recipe.is_file():
        return recipe_of_files([str(recipe)]), info.meta["recipe"]
    return None, ""


def trained_on(model_path: Path, info: ModelInfo, pairs: list[Pair]) -> int:
    """How many of `pairs` the model trained on: its run's train split list, else its recipe's split
    made again (only when the recipe's roots are among the photos' own)."""
    run_dir = find_run_dir(model_path, info)
    if run_dir is not None and (run_dir / "splits" / "train.tsv").is_file():
        try:
            trained = read_split(run_dir / "splits" / "train.tsv")
        except UserError:  # the run's data moved: nothing to compare with
            return 0
    else:
        recipe, _ = recipe_of(info)
        roots = {Path(p.root).resolve() for p in pairs}
        if recipe is None or not roots & {Path(r).resolve() for r in recipe.roots}:
            return 0
        trained = recipe.make()[0]["train"]
    return len({p.image_path.resolve() for p in trained} & {p.image_path.resolve() for p in pairs})


def calibration_pairs(ckpt: Path, info: ModelInfo, roots: list[str] | None) -> tuple[list, list, str]:
    """(calibration pairs, check pairs, where from): --calibration-data, else the run's train and val splits."""
    if roots:
        pairs = [pair for root in roots for pair in scan_root(root).pairs]
        return pairs[::2], pairs[1::2], f"--calibration-data {' '.join(roots)}"
    run_dir, splits = run_splits(ckpt, info)
    if run_dir is None:
        raise UserError(
            f"--formats int8: {ckpt} has no run folder to take calibration photos from; "
            "pass --calibration-data ROOT (photos like those the model will see)"
        )
    return splits["train"], splits["val"] or splits["train"][1::2], f"the train and val splits of {run_dir}"
