"""People composited into scenes: copy-paste augmentation for small, off-centre and several people.

Every training photo holds one large, central person; webcams and videos show people small,
off-centre, several at once, half out of the frame. SceneComposer builds such a scene from the
training data before the usual light and camera augmentation (lib/training/transforms.py):

- over the sample's own framed photo, 0 to 3 people cut out of other training pairs by their
  masks are pasted, from about a tenth of the frame's height to larger than the frame, anywhere,
  overlapping each other and the sample's person (the target is the union);
- or the sample's photo is zoomed out over a real background (another training photo, whose
  person stays labelled, or a people-free plate) instead of being padded with black;
- a cut-out whose person touched its photo's edge (a head-and-shoulders crop) keeps that cut
  edge on the frame's edge, as a person cut by the frame does.

A pasted person must not be recognisable by its outline alone (a measured trap: a network learns
"pasted = person", see ../shared/backgrounds/README.md), so each one takes the light and colour of
the place it lands (mean and spread in Lab, partly), the scene's softness (blur) and grain (noise),
and a soft edge; then the whole frame gets the same camera augmentation. Plates are a minority of
the backgrounds for the same reason.

Targets are 0/1 with 255 for unknown pixels (lib.training.masks.IGNORE); a pasted person covers whatever
was under it, unknown pixels included. Everything random is drawn from the one generator passed
in, so a sample is a function of (seed, epoch, index) and the same after a resume.

The pixel work (cutting out, matching colour and grain, turning, blending in) is lib.training.cutout.
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import gin
import numpy as np

from lib.live.checks import check_number
from lib.live.errors import UserError
from lib.live.preprocess import IMAGE_SUFFIXES, to_rgb
from lib.training.cutout import blend_in, cut_person, fit_cover, grain, match_colour, turn
from lib.training.pairs import read_photo


@gin.configurable
def plate_split(folders: tuple[str, ...] = (), holdout_every: int = 4) -> tuple[list[Path], list[Path]]:
    """People-free background photos ("plates"), split by sequence into training and held-out ones.

    Files are `<sequence>_<frame>.<ext>` (or any name: the whole stem is then its own sequence);
    every holdout_every-th sequence in sorted order is held out of training, so the share of pixels
    called person on frames no training sample was built on can be measured (train.py does, every
    epoch). holdout_every=0 holds nothing out.
    """
    check_number("plate_split.holdout_every", holdout_every, low=0, expected="0 (none held out) or more")
    files = []
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise UserError(f"plate_split.folders: {folder} is not a folder of people-free photos")
        files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    sequences = sorted({_sequence(p) for p in files})
    held = {s for i, s in enumerate(sequences) if holdout_every and i % holdout_every == holdout_every - 1}
    return [p for p in files if _sequence(p) not in held], [p for p in files if _sequence(p) in held]


def _sequence(path: Path) -> str:
    stem, _, frame = path.stem.rpartition("_")
    return f"{path.parent}/{stem if stem and frame.isdigit() else path.stem}"


class SceneComposer:
    """Builds the scene of one training sample at out_hw (see the module's docstring).

    load_pair(i) -> (RGB image, target) of training pair i, as the dataset reads it; n_pairs its
    count. plates: people-free photos to use as backgrounds. frame(image, target, out_hw, rng)
    frames the sample's own photo (the geometric part of lib.training.transforms.TrainTransform).
    """

    def __init__(
        self,
        load_pair: Callable[[int], tuple[np.ndarray, np.ndarray]],
        n_pairs: int,
        plates: list[Path] = (),
        paste_prob: float = 0.6,
        max_people: int = 3,
        height_range: tuple[float, float] = (0.1, 1.3),
        zoom_out_prob: float = 0.25,
        zoom_out_range: tuple[float, float] = (0.3, 0.85),
        plate_prob: float = 0.35,
        plate_long_side: int = 640,
        turn_prob: float = 0.0,
        decoy_prob: float = 0.0,
        sideways_prob: float = 0.0,
    ):
        """The settings are checked here, named as recipes bind them (lib.training.data.build_composer)."""
        probabilities = {"paste_prob": paste_prob, "zoom_out_prob": zoom_out_prob, "plate_prob": plate_prob}
        probabilities |= {"turn_prob": turn_prob, "decoy_prob": decoy_prob, "sideways_prob": sideways_prob}
        for name, value in probabilities.items():
            check_number(f"build_composer.{name}", value, low=0, high=1, expected="a probability between 0 and 1")
        low_high = (height_range, zoom_out_range)
        if max_people < 1 or not all(0 < low <= high for low, high in low_high):
            raise UserError(
                f"build_composer: max_people={max_people} (expected 1 or more), height_range={height_range} and "
                f"zoom_out_range={zoom_out_range} (expected 0 < low <= high)"
            )
        self.load_pair, self.n_pairs = load_pair, n_pairs
        self.plates = list(plates)
        self.paste_prob, self.max_people, self.height_range = paste_prob, max_people, height_range
        self.zoom_out_prob, self.zoom_out_range = zoom_out_prob, zoom_out_range
        self.plate_prob = plate_prob if self.plates else 0.0
        self.plate_long_side = plate_long_side
        self.turn_prob = turn_prob  # a whole person pasted at any angle: cartwheels, people lying down
        self.decoy_prob = decoy_prob  # a person's outline filled with background, labelled background
        self.sideways_prob = sideways_prob  # the sample's photo turned by 90, 180 or 270 degrees
        self._plate_cache: dict[int, np.ndarray] = {}  # per worker: a plate decoded once

    def __call__(self, image, target, out_hw, rng: np.random.Generator, frame, index: int):
        if rng.random() < self.sideways_prob:  # the sample's own person lying down or upside down, in its own scene
            turns = int(rng.integers(1, 4))
            image, target = np.ascontiguousarray(np.rot90(image, turns)), np.ascontiguousarray(np.rot90(target, turns))
        if rng.random() < self.zoom_out_prob:
            canvas, canvas_target = self.background(out_hw, rng, frame, index)
            self.zoom_out(canvas, canvas_target, image, target, rng)
        else:
            canvas, canvas_target = frame(image, target, out_hw, rng)
        if rng.random() < self.paste_prob:
            for _ in range(int(rng.integers(1, self.max_people + 1))):
                self.paste_someone(canvas, canvas_target, rng, index)
        return canvas, canvas_target

    def background(self, out_hw, rng, frame, index):
        """A plate (people-free) or another training photo framed, with its people labelled."""
        if rng.random() < self.plate_prob:
            return fit_cover(self.plate(int(rng.integers(len(self.plates)))), out_hw, rng).copy(), np.zeros(
                out_hw, np.uint8
            )
        other = self.other_index(rng, index)
        image, target = self.load_pair(other)
        return frame(image, target, out_hw, rng)

    def plate(self, i: int) -> np.ndarray:
        if i not in self._plate_cache:
            bgr = read_photo(self.plates[i])
            scale = self.plate_long_side / max(bgr.shape[:2])
            if scale < 1:
                bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            self._plate_cache[i] = to_rgb(bgr)
        return self._plate_cache[i]

    def other_index(self, rng, index: int) -> int:
        other = int(rng.integers(self.n_pairs - 1)) if self.n_pairs > 1 else 0
        return other + (other >= index) if self.n_pairs > 1 else 0

    def zoom_out(self, canvas, canvas_target, image, target, rng) -> None:
        """The whole photo scaled down onto the background; its own background fades into the new one
        over a soft border, so no black padding and no hard rectangle tells where it was pasted."""
        H, W = canvas.shape[:2]
        scale = rng.uniform(*self.zoom_out_range) * min(H / image.shape[0], W / image.shape[1])
        h, w = max(8, round(image.shape[0] * scale)), max(8, round(image.shape[1] * scale))
        photo = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        label = cv2.resize(target, (w, h), interpolation=cv2.INTER_NEAREST)
        photo = match_colour(photo, canvas, rng.uniform(0.0, 0.5))
        ramp = max(2, round(min(h, w) * rng.uniform(0.08, 0.2)))
        rect = np.zeros((h, w), np.float32)
        rect[ramp:-ramp, ramp:-ramp] = 1
        rect = cv2.GaussianBlur(rect, (0, 0), ramp / 2)
        alpha = np.maximum(rect, cv2.GaussianBlur((label == 1).astype(np.float32), (0, 0), 0.7))
        top, left = int(rng.integers(-h // 4, H - 3 * h // 4 + 1)), int(rng.integers(-w // 4, W - 3 * w // 4 + 1))
        # where the old photo's own background shows, it is background (or unknown) as labelled
        blend_in(canvas, canvas_target, photo, alpha, top, left, label=label)

    def paste_someone(self, canvas, canvas_target, rng, index: int) -> None:
        image, target = self.load_pair(self.other_index(rng, index))
        cut = cut_person(image, target)
        if cut is None:
            return
        H, W = canvas.shape[:2]
        low, high = self.height_range
        if any(cut.edges):  # a person cut by its photo's frame stays cut by ours: close, so not tiny
            low = min(high, max(low, 0.35))
        height = H * float(np.exp(rng.uniform(np.log(low), np.log(high))))
        scale = height / cut.alpha.shape[0]
        h, w = max(4, round(cut.alpha.shape[0] * scale)), max(2, round(cut.alpha.shape[1] * scale))
        if h * w > 4 * H * W:
            return
        shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        patch = cv2.resize(cut.image, (w, h), interpolation=shrink)
        alpha = cv2.resize(cut.alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            patch, alpha = patch[:, ::-1], alpha[:, ::-1]
            cut.edges = (cut.edges[0], cut.edges[1], cut.edges[3], cut.edges[2])
        label = None  # a person
        if rng.random() < self.decoy_prob:
            # the same outline, edge and colour treatment with no person inside: so pasting itself
            # never tells "person", and a person-shaped patch of scenery stays background
            patch = self.scenery(h, w, rng, index)
            if patch is None:
                return
            label = np.zeros((h, w), np.uint8)
        elif not any(cut.edges) and rng.random() < self.turn_prob:
            patch, alpha = turn(np.ascontiguousarray(patch), np.ascontiguousarray(alpha), rng.uniform(-180, 180))
            h, w = alpha.shape
        top, left = self.place(h, w, H, W, cut.edges, rng)
        # the scene where it lands: its light and colour, softness and grain
        y0, x0 = max(0, top), max(0, left)
        scene = canvas[y0 : max(y0, min(H, top + h)), x0 : max(x0, min(W, left + w))]
        patch = match_colour(np.ascontiguousarray(patch), scene, rng.uniform(0.2, 0.8))
        if rng.random() < 0.4:
            patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.4, 1.2))
        missing = grain(scene) - grain(patch)
        if missing > 0.5:
            noise = rng.normal(0, missing * 0.8, patch.shape).astype(np.float32)
            patch = np.clip(patch.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        alpha = cv2.GaussianBlur(np.ascontiguousarray(alpha), (0, 0), rng.uniform(0.5, 1.2))
        blend_in(canvas, canvas_target, patch, alpha, top, left, label=label)

    def scenery(self, h: int, w: int, rng, index: int) -> np.ndarray | None:
        """hxw of a part of another training photo with (almost) no person in it; None when the one
        drawn has none. Not a plate: with plates' own look labelled background, a network learns that
        this camera's pixels are background (../shared/backgrounds/README.md)."""
        image, target = self.load_pair(self.other_index(rng, index))
        scale = max(h / image.shape[0], w / image.shape[1]) * rng.uniform(1.0, 2.0)
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        target = cv2.resize(target, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        for _ in range(4):
            top = int(rng.integers(0, image.shape[0] - h + 1))
            left = int(rng.integers(0, image.shape[1] - w + 1))
            if (target[top : top + h, left : left + w] != 0).mean() < 0.02:
                return image[top : top + h, left : left + w]
        return None

    @staticmethod
    def place(h: int, w: int, H: int, W: int, edges, rng) -> tuple[int, int]:
        """Anywhere, partly out of the frame; an edge the person was cut at stays on the frame's edge."""
        top = int(rng.integers(-h // 3, max(-h // 3 + 1, H - 2 * h // 3 + 1)))
        left = int(rng.integers(-w // 3, max(-w // 3 + 1, W - 2 * w // 3 + 1)))
        touches_top, touches_bottom, touches_left, touches_right = edges
        if touches_bottom:
            top = H - h
        elif touches_top:
            top = 0
        if touches_left and not touches_right:
            left = min(left, 0) if rng.random() < 0.5 else 0
        elif touches_right and not touches_left:
            left = W - w
        return top, left
