"""Pairs of person photos and masks, read from the layouts people's datasets come in.

Two layouts, detected from the root folder:
- AISegment (Matting Human Datasets): clip_img/<group>/clip_<sub>/<name>.jpg with its matte at
  matting/<group>/matting_<sub>/<name>.png; the person is the PNG's alpha channel.
- folder: images/<name>.<jpg|png|webp|...> with masks/<name>.<png|...>, matched by the path
  below images/ and masks/ without its suffix; masks single-channel, coloured or RGBA (alpha).
  An optional ignore/<name>.png marks unknown pixels (nonzero: neither person nor background,
  e.g. bystanders nobody labelled): the loss and every score leave them out.

How a mask's values are read, the rule for every layout, and what a root's masks are surveyed
for when it is scanned: lib.training.masks.

Bad files are found before training starts, from file headers (cheap: no decoding), and
reported once; the run stops only when nothing usable is left.

File names need not be UTF-8 (a camera's or an old Windows tool's latin-1 `caf\xe9.jpg`): Python
carries such bytes as surrogates, which OpenCV cannot take (it crashes the process), so images
are read from their bytes (lib.live.preprocess.read_image) and names are printed through
lib.live.errors.shown.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from lib.live.errors import UserError, shown
from lib.live.preprocess import IMAGE_SUFFIXES, read_image, to_rgb
from lib.training.masks import mask_survey

MIN_SIDE = 32  # the encoders downsample 5 times: a smaller photo has no pixel left at the bottom
EXIF_ORIENTATION = 0x0112


def read_photo(path: Path) -> np.ndarray:
    """HxWx3 uint8 BGR, as lib.live.preprocess.read_frame, with an OSError whose message can be
    printed whatever the file's name."""
    image = read_image(path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{shown(path)}: not a readable image")
    return image


@dataclass(frozen=True)
class Pair:
    """One photo and its person mask; paths relative to the data root they came from."""

    root: str
    image: str
    mask: str
    layout: str  # "aisegment" or "folder"
    ignore: str = ""  # ignore/<name>.png of a folder-layout root, or "" when the photo has none

    @property
    def image_path(self) -> Path:
        return Path(self.root) / self.image

    @property
    def mask_path(self) -> Path:
        return Path(self.root) / self.mask

    @property
    def ignore_path(self) -> Path | None:
        return Path(self.root) / self.ignore if self.ignore else None


@dataclass
class Scan:
    """What a data root holds: usable pairs, and everything that was left out and why."""

    root: str
    layout: str
    pairs: list[Pair]
    unpaired_images: list[str]
    unpaired_masks: list[str]
    bad: list[str]  # "path: reason"
    notes: list[str] = field(default_factory=list)  # what the masks hold, where it will surprise (mask_survey)

    def report(self, examples: int = 3) -> str:
        """One paragraph for the log; empty when nothing was left out."""
        lines = []
        for what, items in (
            ("images without a mask", self.unpaired_images),
            ("masks without an image", self.unpaired_masks),
            ("unusable pairs", self.bad),
        ):
            if items:
                listed = "; ".join(map(shown, items[:examples])) + ("; ..." if len(items) > examples else "")
                lines.append(f"  {len(items)} {what} left out (e.g. {listed})")
        if not lines:
            return ""
        return f"{shown(self.root)} ({self.layout} layout, {len(self.pairs)} pairs used):\n" + "\n".join(lines)


def pairs_under(roots: list[str], flag: str = "--data") -> list[Pair]:
    """Every usable pair under these roots (what was left out reported once per root)."""
    pairs = []
    for root in roots:
        scan = scan_root(root)
        if scan.report():
            print(scan.report())
        for note in scan.notes:
            print(f"warning: {note}")
        pairs += scan.pairs
    if not pairs:
        raise UserError(f"{flag} {' '.join(map(str, roots))}: no usable image/mask pairs found")
    return pairs


def detect_layout(root: Path) -> str:
    if not root.exists():
        where = "" if root.is_absolute() else f" (looked for {root.resolve()}: relative to the working directory)"
        raise UserError(f"data root {root} does not exist{where}")
    if not root.is_dir():
        raise UserError(f"data root {root} is a file; expected a folder")
    if (root / "clip_img").is_dir() and (root / "matting").is_dir():
        return "aisegment"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    found = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())[:8]
    raise UserError(
        f"data root {root}: expected clip_img/ and matting/ (AISegment layout) or images/ and "
        f"masks/ (folder layout); found {found or 'no folders'}"
    )


def _files_by_key(folder: Path, suffixes: Sequence[str], key) -> tuple[dict, list[str]]:
    """Map key(path) -> path for files with the given suffixes; a key seen twice is ambiguous."""
    found, duplicates = {}, []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in suffixes or name.startswith("."):
                continue
            k = key(path)
            if k is None:
                continue
            if k in found:
                duplicates.append(f"{shown(path)}: same name as {shown(found[k])}")
            else:
                found[k] = path
    return found, duplicates


def _aisegment_key(kind: str):
    # clip_img/<group>/clip_<sub>/<name>.jpg  <->  matting/<group>/matting_<sub>/<name>.png
    def key(path: Path):
        group, sub = path.parent.parent.name, path.parent.name
        prefix = f"{kind}_"
        if not sub.startswith(prefix):
            return None
        return (group, sub[len(prefix) :], path.stem)

    return key


def scan_root(root: str | Path, check: bool = True) -> Scan:
    """Find every photo/mask pair under `root`; with `check`, leave out the unusable ones."""
    layout = detect_layout(Path(root))
    root = Path(root).resolve()  # pairs and split lists hold absolute paths: they work from any directory
    if layout == "aisegment":
        images, dup_i = _files_by_key(root / "clip_img", IMAGE_SUFFIXES, _aisegment_key("clip"))
        masks, dup_m = _files_by_key(root / "matting", (".png",), _aisegment_key("matting"))
    else:
        images, dup_i = _files_by_key(
            root / "images", IMAGE_SUFFIXES, lambda p: p.relative_to(root / "images").with_suffix("")
        )
        masks, dup_m = _files_by_key(
            root / "masks", IMAGE_SUFFIXES, lambda p: p.relative_to(root / "masks").with_suffix("")
        )
    rel = lambda p: str(p.relative_to(root))  # noqa: E731
    ignores = {}
    if layout == "folder" and (root / "ignore").is_dir():
        ignores, _ = _files_by_key(
            root / "ignore", IMAGE_SUFFIXES, lambda p: p.relative_to(root / "ignore").with_suffix("")
        )
    pairs = [
        Pair(str(root), rel(images[k]), rel(masks[k]), layout, rel(ignores[k]) if k in ignores else "")
        for k in images
        if k in masks
    ]
    scan = Scan(
        root=str(root),
        layout=layout,
        pairs=pairs,
        unpaired_images=[rel(images[k]) for k in images if k not in masks],
        unpaired_masks=[rel(masks[k]) for k in masks if k not in images],
        bad=dup_i + dup_m,
    )
    if check:
        good = []
        for pair in pairs:
            reason = check_pair(pair)
            if reason:
                scan.bad.append(reason)
            else:
                good.append(pair)
        scan.pairs = good
        scan.notes = mask_survey(str(root), good)
    return scan


def _looks_truncated(path: Path, fmt: str) -> bool:
    """A cut-off download still has a valid header; its end marker is what goes missing."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 4096))
        tail = f.read()
    if fmt == "JPEG":
        return b"\xff\xd9" not in tail
    if fmt == "PNG":
        return b"IEND" not in tail[-64:]
    return False


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def decoded_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) as read_image decodes the photo: OpenCV turns it upright by its EXIF
    orientation, so a phone photo stored turned is checked against its mask the way it is read.
    (Masks are decoded as stored, IMREAD_UNCHANGED, and checked so.)"""
    turned = im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8)  # a quarter turn: width and height swap
    return im.size[::-1] if turned else im.size


def check_pair(pair: Pair) -> str | None:
    """Why this pair cannot be used (naming the file), or None. Reads headers only."""
    sizes = []
    for path in (pair.image_path, pair.mask_path, *([pair.ignore_path] if pair.ignore else [])):
        try:
            with Image.open(path) as im:
                sizes.append(decoded_size(im) if path == pair.image_path else im.size)
                fmt, alpha, mode = im.format, _has_alpha(im), im.mode
        except (OSError, UnidentifiedImageError, ValueError) as error:
            return f"{shown(path)}: not a readable image ({type(error).__name__})"
        if _looks_truncated(path, fmt):
            return f"{shown(path)}: truncated {fmt} file (no end marker)"
    if min(sizes[0]) < MIN_SIDE:
        return (
            f"{shown(pair.image_path)}: {sizes[0][0]}x{sizes[0][1]} pixels, smaller than the networks' stride "
            f"({MIN_SIDE})"
        )
    if pair.layout == "aisegment" and not alpha:
        return (
            f"{shown(pair.mask_path)}: no alpha channel (mode {mode}); AISegment mattes keep the person "
            "in the 4th (alpha) channel of an RGBA PNG"
        )
    for path, size in zip((pair.mask_path, pair.ignore_path), sizes[1:], strict=False):
        if size != sizes[0]:
            what = "mask" if path == pair.mask_path else "ignore mask"
            return f"{shown(path)}: {what} is {size[0]}x{size[1]} but its image is {sizes[0][0]}x{sizes[0][1]}"
    return None


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB, as training reads photos (lib.live.preprocess says why)."""
    return to_rgb(read_photo(path))
