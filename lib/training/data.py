"""Datasets and data loaders for training: the split, augmentation and batching of pairs."""

import hashlib
import os
import signal
import warnings
from pathlib import Path

import cv2
import gin
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from lib.live.checks import check_number
from lib.live.errors import UserError, shown
from lib.live.preprocess import Preprocess
from lib.training.config import read_bindings
from lib.training.copy_paste import SceneComposer, plate_split
from lib.training.masks import IGNORE, read_target
from lib.training.pairs import Pair, read_rgb
from lib.training.splits import DataRecipe
from lib.training.transforms import EvalTransform, TrainTransform


class EpochSampler(Sampler[int]):
    """A seeded shuffle per epoch that passes the epoch, and each batch's orientation, to the dataset
    inside the key.

    Keys are (epoch * 2 + landscape) * n + index, with landscape drawn once per batch of
    `batch_size` consecutive keys (a batch has one shape; webcams deliver 4:3 and 16:9 landscape
    frames, the photos are portraits). Augmentation then depends only on (seed, epoch, index): the
    same in any worker or process, after a resume, and with persistent workers, which keep their
    own copy of the dataset and never see an attribute set on it after they start.
    """

    def __init__(self, n: int, seed: int = 0, batch_size: int = 1, landscape_share: float = 0.0):
        self.n, self.seed, self.epoch = n, seed, 0
        self.batch_size, self.landscape_share = batch_size, landscape_share

    def set_epoch(self, epoch: int) -> None:  # Accelerate's prepared loader forwards this
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        batches = -(-self.n // self.batch_size)
        landscape = (torch.rand(batches, generator=generator) < self.landscape_share).tolist()
        return iter(
            (self.epoch * 2 + landscape[i // self.batch_size]) * self.n + index for i, index in enumerate(order)
        )


def decode_key(key: int, n: int) -> tuple[int, bool, int]:
    """EpochSampler's key -> (epoch, landscape, index)."""
    rest, index = divmod(key, n)
    epoch, landscape = divmod(rest, 2)
    return epoch, bool(landscape), index


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and target (0, 1, IGNORE) at full resolution; OSError naming the file when one is unusable."""
    image, mask = read_rgb(pair.image_path), read_target(pair)
    if image.shape[:2] != mask.shape:
        raise OSError(f"{shown(pair.mask_path)}: mask size {mask.shape} differs from its image's {image.shape[:2]}")
    return image, mask


class DecodedCache:
    """Training photos decoded once and kept, scaled down to `long_side`, as raw .npy files.

    Decoding a 600x800 JPEG and its PNG mask, then augmenting at that size, costs a loader worker
    about 12 ms a photo; a memory-mapped array at twice the training size costs almost nothing to
    read and less to augment. Files are shared by every worker and every later run (the OS keeps
    them in its page cache); a photo changed on disk gets a new key (path, size, mtime).
    """

    def __init__(self, folder: str | Path, long_side: int):
        self.folder = Path(folder)
        self.long_side = long_side
        self.folder.mkdir(parents=True, exist_ok=True)

    def key(self, pair: Pair) -> str:
        parts = [str(self.long_side), pair.layout]
        for path in (pair.image_path, pair.mask_path, *([pair.ignore_path] if pair.ignore else [])):
            stat = path.stat()
            parts += [str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
        return hashlib.sha1("|".join(parts).encode("utf-8", "surrogateescape")).hexdigest()  # any file name

    def load(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        path = self.folder / f"{self.key(pair)}.npy"
        try:
            stacked = np.load(path, mmap_mode="r")
        except (OSError, ValueError):  # not cached yet (or a file cut short): decode and store
            stacked = self._store(pair, path)
        return np.array(stacked[..., :3]), np.array(stacked[..., 3])

    def _store(self, pair: Pair, path: Path) -> np.ndarray:
        image, mask = read_pair(pair)
        scale = self.long_side / max(image.shape[:2])
        if scale < 1:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = resize_target(mask, size)
        stacked = np.dstack([image, mask])
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")  # workers may race on one photo
        np.save(tmp, stacked)
        os.replace(tmp, path)
        return stacked


def resize_target(target: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 0/1/IGNORE target scaled down to size (w, h): person and unknown each by area, then thresholded."""
    person = cv2.resize((target == 1).astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    unknown = cv2.resize((target == IGNORE).astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    return np.where(unknown & ~person, IGNORE, person).astype(np.uint8)


class SegmentationDataset:
    """Map-style dataset of (image, mask) after a transform; plain, so tests build it directly.

    A key beyond len() carries the epoch (see EpochSampler). A file that still fails to decode
    here (a corrupt body behind a valid header) is reported and replaced by the next sample,
    rather than killing a long run in a worker.
    """

    def __init__(self, pairs: list[Pair], transform, seed: int = 0, cache: DecodedCache | None = None):
        self.pairs = pairs
        self.transform = transform
        self.seed = seed
        self.cache = cache

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[index]
        return self.cache.load(pair) if self.cache else read_pair(pair)

    def __getitem__(self, key: int) -> dict:
        epoch, landscape, index = decode_key(key, len(self.pairs))
        for offset in range(len(self.pairs)):
            i = (index + offset) % len(self.pairs)
            try:
                image, mask = self.load(i)
                break
            except OSError as error:
                warnings.warn(f"skipping {error}", stacklevel=1)
        else:
            raise UserError("no readable pair left in the dataset")
        seed = (self.seed * 1_000_003 + epoch) * 10_000_019 + index
        sample = self.transform(image=image, mask=mask, seed=seed % 2**32, epoch=epoch, landscape=landscape, index=i)
        return {"image": sample["image"], "mask": sample["mask"], "index": index}


@gin.configurable("make_splits")  # the name recipes bind: make_splits.roots, .split, .seed
def data_recipe(
    roots: list[str] = gin.REQUIRED,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> DataRecipe:
    if isinstance(roots, str):
        roots = [roots]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"make_splits.seed={seed!r}: expected a whole number")
    return DataRecipe(tuple(str(r) for r in roots or ()), tuple(split), seed)


def make_splits(**bindings) -> tuple[dict[str, list[Pair]], list[str]]:
    """The splits of the configured recipe (any argument given here overrides its binding)."""
    return data_recipe(**bindings).make()


def recipe_splits(gin_files: list[str], gin_params: list[str] = ()) -> dict[str, list[Pair]]:
    """The splits a recipe's run made, made again: roots, fractions and seed are read from the recipe
    (gin's global configuration untouched), and the split is deterministic, so these are the photos
    its run trained and was tested on."""
    splits, reports = recipe_of_files(gin_files, gin_params).without_missing_roots().make()
    for report in reports:
        print(report)
    return splits


def recipe_of_files(gin_files: list[str], gin_params: list[str] = ()) -> DataRecipe:
    """The data recipe (make_splits.*) that gin files and bindings state, read without parsing them into gin."""
    found = read_bindings(list(gin_files), list(gin_params), "make_splits")
    if "roots" not in found:
        raise UserError(f"{', '.join(gin_files)}: binds no make_splits.roots (the data the recipe trains on)")
    roots = [found["roots"]] if isinstance(found["roots"], str) else found["roots"]
    return DataRecipe(tuple(roots), **{k: tuple(v) if k == "split" else v for k, v in found.items() if k != "roots"})


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the main process stops the run cleanly after the
    # step, which needs the workers alive until then.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# People composited into scenes (lib.training.copy_paste): gin binds SceneComposer's own signature
# under the name recipes use (build_composer.paste_prob, ...), so its defaults are stated once, there.
build_composer = gin.external_configurable(
    SceneComposer, "build_composer", denylist=["load_pair", "n_pairs", "plates", "plate_long_side"]
)


def check_loader_settings(input_size, batch_size, val_batch_size, num_workers, augment, cache_scale, early_size):
    """One line for a value out of range, before anything is built."""
    for name, size in (("input_size", input_size), ("early_size", early_size)):
        if size is not None and not (isinstance(size, tuple | list) and len(size) == 2):
            raise UserError(f"build_dataloaders.{name}={size!r}: expected (height, width), multiples of 32")
    check_number("build_dataloaders.batch_size", batch_size, integer=True, low=1)
    check_number("build_dataloaders.val_batch_size", val_batch_size, integer=True, low=1, optional=True)
    check_number("build_dataloaders.num_workers", num_workers, integer=True, low=0, high=64, optional=True)
    check_number("build_dataloaders.augment_strength", augment, low=0, high=3)
    check_number("build_dataloaders.cache_scale", cache_scale, above=0, high=8)


@gin.configurable(denylist=["splits", "seed"])  # the loop always passes them: a binding would be ignored
def build_dataloaders(
    splits: dict[str, list[Pair]],
    input_size: tuple[int, int] = (384, 288),
    batch_size: int = 8,
    val_batch_size: int | None = None,
    num_workers: int | None = None,
    augment_strength: float = 1.0,
    cache_dir: str | None = None,
    cache_scale: float = 2.0,
    early_size: tuple[int, int] | None = None,
    early_epochs: int = 0,
    landscape_share: float = 0.0,
    scenes: bool = False,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader, Preprocess]:
    """input_size is (height, width), portrait 3:4 like the photos; both multiples of 32.

    num_workers: None takes the machine's cores, at most 8. cache_dir: keep the training photos
    decoded there at cache_scale times the input's long side (DecodedCache); validation always
    reads the originals, exactly as evaluate.py does. early_size/early_epochs: train the first
    epochs at a smaller size (progressive resizing: a quarter fewer pixels is a quarter less work
    on a CPU, and the coarse shapes are learned first anyway). landscape_share: the share of
    training batches turned landscape (webcams deliver 4:3 and 16:9). scenes: people composited
    into scenes (build_composer, lib/training/copy_paste.py).
    """
    check_loader_settings(
        input_size, batch_size, val_batch_size, num_workers, augment_strength, cache_scale, early_size
    )
    height, width = input_size
    for flag, (h, w) in (("input_size", input_size), ("early_size", early_size or input_size)):
        if h % 32 or w % 32 or min(h, w) < 32:
            raise UserError(
                f"build_dataloaders.{flag}={(h, w)}: height and width must be positive "
                "multiples of 32 (the encoders downsample 5 times; UNet++ fails otherwise)"
            )
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    prep = Preprocess(input_size=(height, width))
    cache = DecodedCache(cache_dir, round(cache_scale * max(height, width))) if cache_dir else None
    share = "a share between 0 and 1"
    check_number("build_dataloaders.landscape_share", landscape_share, low=0, high=1, expected=share)
    train_transform = TrainTransform(prep, augment_strength, early_size if early_epochs else None, early_epochs)
    train_set = SegmentationDataset(splits["train"], train_transform, seed=seed, cache=cache)
    if scenes:  # other training pairs are the people to paste: the composer reads them as the dataset does
        train_transform.composer = build_composer(train_set.load, len(train_set), plate_split()[0])
    val_set = SegmentationDataset(splits["val"], EvalTransform(prep), seed=seed)
    workers = {
        "worker_init_fn": _ignore_sigint,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,  # no re-spawn each epoch (seconds per epoch)
        "pin_memory": torch.cuda.is_available(),
    }
    sampler = EpochSampler(len(train_set), seed, batch_size, landscape_share)
    drop_last = len(train_set) > batch_size  # equal batches, unless the set is tiny
    train_dl = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **workers)
    val_dl = DataLoader(val_set, batch_size=val_batch_size or batch_size, shuffle=False, **workers)
    return train_dl, val_dl, prep
