"""Augmentation for people in photos and webcam frames, and the evaluation transform.

The training photos are portraits and full-body shots framed by a photographer; webcam frames
are wider, the person is off-centre, partly out of frame, lit by a window or a screen, noisy and
compressed. Each group below moves the training data toward those frames.
"""

import albumentations as A
import cv2
import numpy as np
import torch

from lib.live.preprocess import Preprocess, letterbox, normalize


def _to_tensors(image: np.ndarray, mask: np.ndarray, prep: Preprocess) -> dict:
    return {
        "image": torch.from_numpy(normalize(image, prep.mean, prep.std)),
        "mask": torch.from_numpy(mask.astype(np.float32))[None],
    }


class TrainTransform:
    """Framing, then (optionally) people composited into the scene, then light and camera artefacts;
    output exactly prep.input_size, or its landscape turn (webcams deliver 4:3 and 16:9).

    With early_size, the first early_epochs epochs come out at that smaller size instead.
    composer: a lib.training.copy_paste.SceneComposer, or None for the photo alone (then zoom-out pads).
    """

    def __init__(
        self,
        prep: Preprocess,
        strength: float = 1.0,
        early_size: tuple[int, int] | None = None,
        early_epochs: int = 0,
        composer=None,
    ):
        self.prep = prep
        self.strength = strength
        self.early_epochs = early_epochs if early_size else 0
        self.early_size = tuple(early_size) if early_size else None
        self.composer = composer
        self.framings: dict[tuple[int, int], A.Compose] = {}  # one per output size, built when first asked
        self.look = self._look(strength)

    def out_size(self, epoch: int, landscape: bool) -> tuple[int, int]:
        height, width = self.early_size if epoch < self.early_epochs else tuple(self.prep.input_size)
        return (min(height, width), max(height, width)) if landscape else (height, width)

    def framing(self, size: tuple[int, int]) -> A.Compose:
        if size not in self.framings:
            self.framings[size] = self._framing(size, self.strength, zoom_out=self.composer is None)
        return self.framings[size]

    @staticmethod
    def _framing(size: tuple[int, int], s: float, zoom_out: bool) -> A.Compose:
        height, width = size
        aspect = width / height
        return A.Compose(
            [
                # Framing: zoom out (small, off-centre people with room around them), tilt, and
                # crops of part of the frame (a head and shoulders cut from a full-body photo,
                # a person half out of the picture). Crop aspect stays near the box's, so the
                # resize to the box stretches little; the evaluation path never stretches. With a
                # scene composer the big zoom-outs happen there, over a real background.
                A.Affine(
                    scale=(1 - (0.4 if zoom_out else 0.1) * s, 1 + 0.2 * s),
                    translate_percent={"x": (-0.2 * s, 0.2 * s), "y": (-0.1 * s, 0.15 * s)},
                    rotate=(-10 * s, 10 * s),
                    border_mode=cv2.BORDER_CONSTANT if zoom_out else cv2.BORDER_REFLECT_101,
                    fill=0,
                    fill_mask=0,
                    p=0.6,
                ),
                A.RandomResizedCrop(
                    size=(height, width),
                    scale=(max(0.05, 1 - 0.7 * s), 1.0),
                    ratio=(aspect * 0.8, aspect * 1.25),
                    area_for_downscale="image",
                ),
                A.HorizontalFlip(p=0.5),
            ]
        )

    @staticmethod
    def _look(s: float) -> A.Compose:
        return A.Compose(
            [
                # Light: exposure, contrast, colour temperature, a shadow across the room.
                A.OneOf(
                    [
                        A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3),
                        A.RandomGamma(gamma_limit=(60, 160)),
                        A.RandomToneCurve(scale=0.2),
                    ],
                    p=0.7 * s,
                ),
                A.OneOf(
                    [
                        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=30, val_shift_limit=10),
                        A.PlanckianJitter(),
                        A.ToGray(),
                    ],
                    p=0.4 * s,
                ),
                A.RandomShadow(shadow_roi=(0, 0, 1, 1), shadow_intensity_range=(0.2, 0.6), p=0.1 * s),
                # Camera: motion and focus blur, sensor noise, low resolution, JPEG/stream compression.
                A.OneOf(
                    [A.MotionBlur(blur_limit=(3, 9)), A.GaussianBlur(blur_limit=(3, 7))],
                    p=0.2 * s,
                ),
                A.OneOf(
                    [A.GaussNoise(std_range=(0.02, 0.08)), A.ISONoise(intensity=(0.1, 0.5))],
                    p=0.25 * s,
                ),
                A.Downscale(scale_range=(0.4, 0.8), p=0.1 * s),
                A.ImageCompression(quality_range=(35, 95), p=0.3 * s),
            ]
        )

    def frame(self, image: np.ndarray, target: np.ndarray, size: tuple[int, int], rng: np.random.Generator):
        """The geometric part alone: a photo framed at `size` (the composer frames backgrounds with it)."""
        pipeline = self.framing(size)
        pipeline.set_random_seed(int(rng.integers(2**32)))
        out = pipeline(image=image, mask=target)
        return out["image"], out["mask"]

    def compose(
        self, image: np.ndarray, target: np.ndarray, seed: int, epoch: int = 0, landscape: bool = False, index: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The augmented RGB image and target (0, 1, 255 unknown) before normalisation: what a
        picture of a training batch shows."""
        # albumentations draws from its own generators, seeded from the OS unless told: a seed
        # per sample makes augmentation a function of (run seed, epoch, index), the same in any
        # worker or process and after a resume.
        rng = np.random.default_rng(seed)
        size = self.out_size(epoch, landscape)
        if self.composer is not None:
            image, target = self.composer(image, target, size, rng, self.frame, index)
        else:
            image, target = self.frame(image, target, size, rng)
        self.look.set_random_seed(int(rng.integers(2**32)))
        return self.look(image=image)["image"], target

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        seed: int | None = None,
        epoch: int = 0,
        landscape: bool = False,
        index: int = 0,
    ) -> dict:
        seed = int(np.random.default_rng().integers(2**32)) if seed is None else seed
        image, target = self.compose(image, mask, seed, epoch, landscape, index)
        return _to_tensors(image, target, self.prep)


class EvalTransform:
    """Letterbox into the fixed input box (aspect kept, centred padding), then normalise."""

    def __init__(self, prep: Preprocess):
        self.prep = prep

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed=None, epoch=0, landscape=False, index=0) -> dict:
        box = tuple(self.prep.input_size)
        image, _ = letterbox(image, box, self.prep.stride, pad_to_box=True)
        mask, _ = letterbox(mask, box, self.prep.stride, pad_to_box=True, interpolation=cv2.INTER_NEAREST)
        return _to_tensors(image, mask, self.prep)
