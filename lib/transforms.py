"""Augmentation for people in photos and webcam frames, and the evaluation transform.

The training photos are portraits and full-body shots framed by a photographer; webcam frames
are wider, the person is off-centre, partly out of frame, lit by a window or a screen, noisy and
compressed. Each group below moves the training data toward those frames.
"""

import albumentations as A
import cv2
import numpy as np
import torch

from lib.preprocess import Preprocess, letterbox, normalize


def _to_tensors(image: np.ndarray, mask: np.ndarray, prep: Preprocess) -> dict:
    return {
        "image": torch.from_numpy(normalize(image, prep.mean, prep.std)),
        "mask": torch.from_numpy(mask.astype(np.float32))[None],
    }


class TrainTransform:
    """Random framing + photometric + camera artefacts, output exactly prep.input_size.

    With early_size, the first early_epochs epochs come out at that smaller size instead.
    """

    def __init__(
        self, prep: Preprocess, strength: float = 1.0, early_size: tuple[int, int] | None = None, early_epochs: int = 0
    ):
        self.prep = prep
        self.early_epochs = early_epochs if early_size else 0
        self.early_size = tuple(early_size) if early_size else None
        self.pipeline = self._pipeline(tuple(prep.input_size), strength)
        self.early_pipeline = self._pipeline(tuple(early_size), strength) if self.early_epochs else None

    @staticmethod
    def _pipeline(size: tuple[int, int], s: float) -> A.Compose:
        height, width = size
        aspect = width / height
        return A.Compose(
            [
                # Framing: zoom out (small, off-centre people with room around them), tilt, and
                # crops of part of the frame (a head and shoulders cut from a full-body photo,
                # a person half out of the picture). Crop aspect stays near the box's, so the
                # resize to the box stretches little; the evaluation path never stretches.
                A.Affine(
                    scale=(1 - 0.4 * s, 1 + 0.2 * s),
                    translate_percent={"x": (-0.2 * s, 0.2 * s), "y": (-0.1 * s, 0.15 * s)},
                    rotate=(-10 * s, 10 * s),
                    border_mode=cv2.BORDER_CONSTANT,
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

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None, epoch: int = 0) -> dict:
        # albumentations draws from its own generators, seeded from the OS unless told: a seed
        # per sample makes augmentation a function of (run seed, epoch, index), the same in any
        # worker or process and after a resume.
        pipeline = self.early_pipeline if epoch < self.early_epochs else self.pipeline
        if seed is not None:
            pipeline.set_random_seed(seed)
        out = pipeline(image=image, mask=mask)
        return _to_tensors(out["image"], out["mask"], self.prep)


class EvalTransform:
    """Letterbox into the fixed input box (aspect kept, centred padding), then normalise."""

    def __init__(self, prep: Preprocess):
        self.prep = prep

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None, epoch: int = 0) -> dict:
        box = tuple(self.prep.input_size)
        image, _ = letterbox(image, box, self.prep.stride, pad_to_box=True)
        mask, _ = letterbox(mask, box, self.prep.stride, pad_to_box=True, interpolation=cv2.INTER_NEAREST)
        return _to_tensors(image, mask, self.prep)
