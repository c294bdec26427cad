"""Person boxes to person masks, made by our own networks: photos with boxes become a training root.

Each box is widened by a margin, grown to the network's aspect (3:4, turned for a wide box) and
cropped, so the person fills the network's input as in the photos it learned from. The networks'
probabilities (several networks averaged, each also on the mirrored crop) are pasted back into the
photo, kept inside the box (plus a little slack: boxes are drawn tight). Then every pixel is:

- person: inside a box, probability >= `high`;
- unknown: inside a box and between `low` and `high` (the networks are unsure), anywhere in a box
  too small to label well (`min_box_px`), in a crowd region (COCO's iscrowd boxes), or outside
  every box where the networks run on the whole photo call it person (`outside_prob`): people
  nobody boxed, in a crowd or far away;
- background: everything else (far from every box and not person-like).

Unknown pixels go to ignore/ (255), which training and every score leave out (lib.training.masks).
Only our own networks label: peers' outputs are never labels (they are for comparison only).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lib.live.errors import UserError, shown

BOX_FORMATS = ("txt", "yolo", "coco")


@dataclass(frozen=True)
class Boxes:
    """The people of one photo: (x0, y0, x1, y1) in pixels; crowd regions are unknown, not people."""

    people: list[tuple[float, float, float, float]]
    crowds: list[tuple[float, float, float, float]]


@dataclass(frozen=True)
class LabelSettings:
    margin: float = 0.15  # each side of a box widened by this share of its size before cropping
    slack: float = 0.04  # pixels kept this far outside the box (share of its size): boxes are tight
    low: float = 0.3  # below: background; between low and high: unknown
    high: float = 0.6  # at or above: person
    outside_prob: float = 0.5  # outside every box, the whole photo's probability that makes a pixel unknown
    min_box_px: int = 24  # a box shorter than this (pixels of the photo) is unknown as a whole
    flip: bool = True  # also run the mirrored crop and average

    def check(self) -> None:
        if not (0 <= self.margin <= 1 and 0 <= self.slack <= 0.5):
            raise UserError(f"--margin {self.margin} / slack {self.slack}: expected 0..1 and 0..0.5")
        if not 0 < self.low <= self.high < 1:
            raise UserError(f"--low {self.low} --high {self.high}: expected 0 < low <= high < 1")
        if not 0 < self.outside_prob <= 1:
            raise UserError(f"--outside-prob {self.outside_prob}: expected a probability above 0")
        if self.min_box_px < 1:
            raise UserError(f"--min-box-px {self.min_box_px}: expected 1 or more")


def _numbers(line: str, path: Path, number: int, count: int) -> list[float]:
    parts = line.split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise UserError(f"{path}, line {number}: {line.strip()!r}: expected {count} numbers")
    return values


def read_txt_boxes(path: Path, width: int, height: int) -> Boxes:
    """Our layout: one person a line, `x0 y0 x1 y1` in pixels of the photo; an empty file: nobody."""
    people = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if line.strip():
            people.append(tuple(_numbers(line, path, number, 4)))
    return Boxes(people, [])


def read_yolo_boxes(path: Path, width: int, height: int, person_class: int = 0) -> Boxes:
    """YOLO: `class cx cy w h`, normalised to 0..1; only `person_class` lines are people."""
    people = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if len(line.split()) < 5:
            if line.strip():
                raise UserError(f"{path}, line {number}: {line.strip()!r}: expected class cx cy w h")
            continue
        cls, cx, cy, w, h = _numbers(" ".join(line.split()[:5]), path, number, 5)  # a confidence may follow
        if max(cx, cy, w, h) > 1.5:
            raise UserError(f"{path}, line {number}: YOLO boxes are normalised to 0..1; found {line.strip()!r}")
        if int(cls) == person_class:
            people.append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return Boxes(people, [])


def read_coco_boxes(path: Path) -> dict[str, Boxes]:
    """COCO json: {file name without suffix: Boxes} for category 'person' (bbox x, y, w, h; iscrowd apart)."""
    try:
        data = json.loads(path.read_text(errors="replace"))
        person_ids = {c["id"] for c in data["categories"] if c.get("name") == "person"}
        names = {im["id"]: Path(im["file_name"]).stem for im in data["images"]}
        annotations = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(f"--coco {path}: not a COCO instances file ({type(error).__name__}: {error})") from None
    if not person_ids:
        raise UserError(f"--coco {path}: no category named 'person'")
    found = {name: Boxes([], []) for name in names.values()}
    for a in annotations:
        if a.get("category_id") in person_ids and a.get("image_id") in names:
            x, y, w, h = a["bbox"]
            boxes = found[names[a["image_id"]]]
            (boxes.crowds if a.get("iscrowd") else boxes.people).append((x, y, x + w, y + h))
    return found


def crop_window(box, photo_hw: tuple[int, int], margin: float, aspect_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1; may reach past the photo) around a box: widened by `margin` a side,
    then grown on its short side to the network's aspect, turned to the box's orientation."""
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    long_side, short_side = max(aspect_hw), min(aspect_hw)
    ratio = long_side / short_side  # height / width of a portrait input
    if h >= w:
        w, h = max(w, h / ratio), max(h, w * ratio)
    else:
        w, h = max(w, h * ratio), max(h, w / ratio)
    return round(cx - w / 2), round(cy - h / 2), round(cx + w / 2), round(cy + h / 2)


def cut(photo: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """The window of the photo; what lies past its edge is the edge repeated (no black frame)."""
    x0, y0, x1, y1 = window
    height, width = photo.shape[:2]
    pad = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    part = photo[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    return cv2.copyMakeBorder(part, *pad, cv2.BORDER_REPLICATE) if any(pad) else part


Predict = Callable[[list[np.ndarray]], list[np.ndarray]]  # BGR crops -> person probability, each at its size


def label_photo(photo: np.ndarray, boxes: Boxes, predict: Predict, aspect_hw, settings: LabelSettings):
    """(mask, unknown, probability) for one photo: uint8 0/255, bool, float32 (the pasted box probabilities)."""
    height, width = photo.shape[:2]
    prob = np.zeros((height, width), np.float32)
    in_box = np.zeros((height, width), bool)
    unknown = np.zeros((height, width), bool)
    labelled, windows = [], []
    for box in boxes.people:
        x0, y0, x1, y1 = box
        if y1 - y0 < settings.min_box_px:
            unknown[_rows(y0, y1, height), _rows(x0, x1, width)] = True
            continue
        labelled.append(box)
        windows.append(crop_window(box, (height, width), settings.margin, aspect_hw))
    crops = [cut(photo, w) for w in windows]
    probs = predict(crops + [photo])
    whole = probs[-1]
    for box, window, p in zip(labelled, windows, probs[:-1], strict=True):
        sx, sy = (box[2] - box[0]) * settings.slack, (box[3] - box[1]) * settings.slack
        rows, cols = _rows(box[1] - sy, box[3] + sy, height), _rows(box[0] - sx, box[2] + sx, width)
        wx0, wy0 = window[0], window[1]
        scale_y, scale_x = p.shape[0] / (window[3] - window[1]), p.shape[1] / (window[2] - window[0])
        ys = np.clip(((np.arange(rows.start, rows.stop) - wy0 + 0.5) * scale_y).astype(int), 0, p.shape[0] - 1)
        xs = np.clip(((np.arange(cols.start, cols.stop) - wx0 + 0.5) * scale_x).astype(int), 0, p.shape[1] - 1)
        prob[rows, cols] = np.maximum(prob[rows, cols], p[np.ix_(ys, xs)])
        in_box[rows, cols] = True
    for x0, y0, x1, y1 in boxes.crowds:
        unknown[_rows(y0, y1, height), _rows(x0, x1, width)] = True
    person = in_box & (prob >= settings.high)  # a sure person wins over an overlapping small box or crowd
    unknown |= in_box & (prob >= settings.low)
    unknown |= ~in_box & (whole >= settings.outside_prob)
    unknown &= ~person
    return person.astype(np.uint8) * 255, unknown, prob


def _rows(a: float, b: float, size: int) -> slice:
    return slice(int(max(0, np.floor(a))), int(min(size, np.ceil(b))))


def segmenters_predict(segmenters, flip: bool) -> Predict:
    """The mean probability of several networks (each with its mirrored input when `flip`)."""

    def predict(crops: list[np.ndarray]) -> list[np.ndarray]:
        total = None
        for segmenter in segmenters:
            probs = segmenter.predict_many(crops, tta=flip)
            total = probs if total is None else [t + p for t, p in zip(total, probs, strict=True)]
        return [t / len(segmenters) for t in total]

    return predict


def summary(photos: int, ckpts: list[str], out: Path | None, unknown: int, pixels: int) -> str:
    """The labeller's closing line: how many photos, by which networks, into which root, and the
    share of their pixels left unknown (training and every score leave those out)."""
    into = f" into {shown(out)}" if out else ""
    share = f"{100 * unknown / max(pixels, 1):.1f} % of all pixels left unknown"
    return f"labelled {photos} photos with {', '.join(map(shown, ckpts))}{into} ({share})"


@dataclass
class Agreement:
    """Labels scored against hand masks: IoU on the pixels both kept, and the share left unknown."""

    inter: int = 0
    union: int = 0
    unknown: int = 0
    pixels: int = 0
    photo_ious: list = None

    def add(self, mask: np.ndarray, unknown: np.ndarray, hand: np.ndarray, hand_ignore: np.ndarray | None) -> None:
        keep = ~unknown & (True if hand_ignore is None else ~hand_ignore)
        ours, theirs = (mask > 127) & keep, (hand > 127) & keep
        inter, union = int(np.count_nonzero(ours & theirs)), int(np.count_nonzero(ours | theirs))
        self.inter, self.union = self.inter + inter, self.union + union
        self.unknown += int(np.count_nonzero(unknown))
        self.pixels += unknown.size
        fraction = float(np.count_nonzero(hand > 127)) / hand.size
        if self.photo_ious is None:
            self.photo_ious = []
        if union:
            self.photo_ious.append((fraction, inter / union))

    def report(self) -> str:
        bands = [(0, 0.03), (0.03, 0.13), (0.13, 1.01)]
        lines = [
            f"against hand masks: IoU {self.inter / max(self.union, 1):.4f} on the pixels kept "
            f"({100 * self.unknown / max(self.pixels, 1):.1f} % of all pixels left unknown)"
        ]
        for low, high in bands:
            ious = [iou for f, iou in self.photo_ious or [] if low <= f < high]
            if ious:
                band = f"people {low:.0%}-{min(high, 1):.0%} of the photo"
                lines.append(f"  {band}: mean photo IoU {np.mean(ious):.4f} ({len(ious)} photos)")
        return "\n".join(lines)
