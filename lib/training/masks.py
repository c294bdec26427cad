"""How a mask's values are read, the rule for every layout, and what a root's masks hold.

A mask holding 0 and one other value (0/255, 0/1, 0/100, ...) is a hard mask, that value the
person; a mask holding more values (a soft matte, antialiased edges, JPEG noise) is the person
where it reaches half its type's full scale (128 of 255). What a root's masks hold is surveyed
when it is scanned (lib.training.pairs.scan_root), and a root whose masks are all empty, or soft
and never reach half scale, is named in a warning. An ignore mask marks unknown pixels (nonzero:
neither person nor background), which the loss and every score leave out (read_target).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from lib.live.errors import shown
from lib.live.preprocess import read_image

if TYPE_CHECKING:  # lib.training.pairs imports this module: Pair is named here in annotations only
    from lib.training.pairs import Pair

SURVEY = 64  # masks decoded per root when it is scanned, to say what they hold (mask_survey)
IGNORE = 255  # the value of an unknown pixel in a target (read_target): 0 background, 1 person


def mask_values(path: Path, layout: str) -> np.ndarray:
    """The values a mask marks the person with, as stored: HxW (the alpha of an RGBA mask, the
    brightest channel of a coloured one)."""
    raw = read_image(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise OSError(f"{shown(path)}: not a readable image")
    if layout == "aisegment":
        # Exactly how the AISegment mattes must be read: the alpha channel is the person.
        if raw.ndim != 3 or raw.shape[2] != 4:
            raise OSError(f"{shown(path)}: expected an RGBA PNG (person in the alpha channel), got shape {raw.shape}")
        return raw[:, :, 3]
    if raw.ndim == 2:
        return raw
    if raw.shape[2] == 4:
        return raw[:, :, 3]
    return raw.max(axis=2)  # a coloured mask: any non-black pixel is the person


def full_scale(values: np.ndarray) -> float:
    return float(np.iinfo(values.dtype).max) if values.dtype.kind in "ui" else 1.0


def read_mask(path: Path, layout: str) -> np.ndarray:
    """HxW uint8 in {0, 1}: 1 where the person is, by the rule in this module's docstring: a hard
    mask (0 and one other value: 0/255, 0/1, 0/100) is that value; a soft one reaches half scale."""
    values = mask_values(path, layout)
    person = values > 0
    if not person.any():
        return person.astype(np.uint8)
    lowest, highest = values[person].min(), values.max()
    if lowest == highest:  # a hard mask, whatever value it marks the person with
        return person.astype(np.uint8)
    return (values.astype(np.float32) >= full_scale(values) / 2).astype(np.uint8)


def mask_survey(root: str, pairs: list[Pair], limit: int = SURVEY) -> list[str]:
    """What a root's masks hold, where it will surprise: every mask empty, hard masks of a value
    other than full scale or 1 (read as person: a note), soft masks that never reach half scale
    (read as empty). Decodes `limit` masks spread over the root (all of them in a small root)."""
    if not pairs:
        return []
    chosen = pairs[:: max(1, -(-len(pairs) // limit))][:limit]
    read, empty, hard, soft_max, scale = 0, 0, set(), [], 255.0
    for pair in chosen:
        try:
            values = mask_values(pair.mask_path, pair.layout)
        except OSError:
            continue  # a corrupt body behind a good header: reported where it is read
        read += 1
        scale = full_scale(values)
        nonzero = values[values > 0]
        if not nonzero.size:
            empty += 1
        elif nonzero.min() == nonzero.max():
            hard.add(int(nonzero.max()))
        else:
            soft_max.append(int(values.max()))
    where = (
        f"its {len(pairs)} masks"
        if len(chosen) == len(pairs)
        else f"the {len(chosen)} of its {len(pairs)} masks checked"
    )
    notes = []
    if read and empty == read:
        return [
            f"every mask in {shown(root)} is empty (no person pixel in {where}): person IoU on it is 0 "
            "wherever a model finds anyone; masks mark the person with 255 (or 1), background 0"
        ]
    odd = sorted(hard - {1, int(scale)})
    if odd:
        notes.append(
            f"masks in {shown(root)} hold 0 and {'/'.join(map(str, odd))}, not 0/{scale:g}: "
            f"read as hard masks, {'/'.join(map(str, odd))} the person"
        )
    faint = [m for m in soft_max if m < scale / 2]
    if faint:
        notes.append(
            f"{len(faint)} of {where} in {shown(root)} hold values 0..{max(faint)}, not 0/{scale:g}: soft masks are "
            f"the person where they reach {scale / 2:g} (half of {scale:g}), so these read as empty; "
            f"scale them to 0..{scale:g}"
        )
    return notes


def read_target(pair: Pair) -> np.ndarray:
    """HxW uint8: 1 person, 0 background, IGNORE where the pair's ignore mask marks unknown pixels."""
    target = read_mask(pair.mask_path, pair.layout)
    if pair.ignore:
        unknown = read_image(pair.ignore_path, cv2.IMREAD_GRAYSCALE)
        if unknown is None:
            raise OSError(f"{shown(pair.ignore_path)}: not a readable image")
        if unknown.shape != target.shape:
            raise OSError(
                f"{shown(pair.ignore_path)}: ignore mask {unknown.shape} differs from its mask's {target.shape}"
            )
        target[unknown > 0] = IGNORE
    return target
