"""How a picture becomes model input and how the model's output becomes a full-size mask.

One place for it, so training validation, evaluate.py, the exported files and the webcam all
feed the model exactly the same pixels. The aspect ratio is never squashed: the picture is
scaled to fit the model's input box (turned to match the picture's orientation, so a landscape
webcam frame gets a landscape box) and padded, and the padding is cut off the prediction again.
A model file may name a larger box for landscape pictures than its portrait box turned: in a 16:9
frame the person is 144 pixels tall at most in a 192x256 box, against 256 in a portrait photo.
"""

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from lib.live.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")  # photos, masks and frames alike


# Colour order, decided here once: frames and photos are BGR as OpenCV decodes them, and so is what
# every segmenter takes; the network's input, the training side's augmentation and pictures are RGB.
def read_image(path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """cv2.imread(path, flags) for any file name: None when the file is missing or not an image.

    The one image reader of the project (photos, masks, backgrounds, frames). The bytes are read by
    Python and decoded by OpenCV, because OpenCV 5 crashes the process (SIGSEGV) on a file name that
    is not valid UTF-8 (b'caf\\xe9.jpg'), and such names are common on older disks and archives.
    The decoded picture is the same as imread's, EXIF orientation included."""
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    return cv2.imdecode(data, flags) if data.size else None


def read_frame(path) -> np.ndarray:
    """A photo as the segmenters take it: HxWx3 uint8 BGR; OSError naming the file when unreadable."""
    image = read_image(path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"{path}: not a readable image")
    return image


def to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def to_bgr(image_rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)


@dataclass(frozen=True)
class Preprocess:
    """What a checkpoint needs to say about its input, so nobody has to type it again."""

    input_size: tuple[int, int]  # (height, width) of the training batches, portrait by default
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stride: int = 32  # height and width fed to the model are multiples of this
    landscape_size: tuple[int, int] | None = None  # (height, width) for pictures wider than tall; None: turned

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["landscape_size"] is None:
            del d["landscape_size"]  # the files written before it had none: their meta stays as it was
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(
            input_size=tuple(d["input_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            stride=int(d.get("stride", 32)),
            landscape_size=tuple(d["landscape_size"]) if d.get("landscape_size") else None,
        )

    def box_for(self, height: int, width: int) -> tuple[int, int]:
        """The input box turned to the picture's orientation (the model is fully convolutional), or
        the landscape box where the file names one and the picture is wider than tall."""
        long_side, short_side = max(self.input_size), min(self.input_size)
        if height >= width:
            return long_side, short_side
        return self.landscape_size or (short_side, long_side)

    def boxes_text(self) -> str:
        """'256x192' or '256x192, landscape 288x384': the boxes as the flags take them."""
        text = "x".join(map(str, self.input_size))
        return text + (f", landscape {'x'.join(map(str, self.landscape_size))}" if self.landscape_size else "")

    def fit_size(self, height: int, width: int) -> tuple[int, int]:
        """The size a picture is scaled to before padding: inside its box, aspect ratio kept."""
        return fit(height, width, self.box_for(height, width))


def parse_input_size(text: str, flag: str, stride: int = 32) -> tuple[int, int]:
    """'384x288' -> (384, 288): a network input box as the files describe it (height x width of the
    training batches, turned to each picture's orientation), both sides multiples of the stride."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected HEIGHTxWIDTH of the network's input, e.g. 384x288") from None
    if min(height, width) < stride or height % stride or width % stride:
        raise UserError(f"{flag} {text}: both sides must be positive multiples of {stride}")
    return height, width


def with_boxes(prep: Preprocess, input_size: str | None, landscape_size: str | None) -> Preprocess:
    """prep with the boxes a user asked for (the flags --input-size and --landscape-size).

    --input-size sets the box for every picture, turned to its orientation (a landscape box the file
    names is dropped with it); --landscape-size sets the box for pictures wider than tall only."""
    if input_size:
        box = parse_input_size(input_size, "--input-size", prep.stride)
        prep = replace(prep, input_size=box, landscape_size=None)
    if landscape_size:
        box = parse_input_size(landscape_size, "--landscape-size", prep.stride)
        if box[0] >= box[1]:
            raise UserError(f"--landscape-size {landscape_size}: expected a box wider than tall, e.g. 288x384")
        prep = replace(prep, landscape_size=box)
    return prep


def fit(height: int, width: int, box: tuple[int, int]) -> tuple[int, int]:
    """(height, width) scaled to fit inside box, aspect ratio kept."""
    scale = min(box[0] / height, box[1] / width)
    return max(1, min(box[0], round(height * scale))), max(1, min(box[1], round(width * scale)))


@dataclass(frozen=True)
class Placement:
    """Where the resized picture sits inside the padded model input."""

    top: int
    left: int
    height: int
    width: int


def letterbox(
    image: np.ndarray,
    box: tuple[int, int],
    stride: int = 32,
    pad_to_box: bool = True,
    interpolation: int = cv2.INTER_AREA,
) -> tuple[np.ndarray, Placement]:
    """Scale `image` to fit inside `box` keeping its aspect ratio, then pad it centred with zeros.

    pad_to_box pads to the whole box (every sample of a batch has one shape); otherwise only up to
    the next multiple of `stride`, which spares the model the work on padding for a wide frame.
    """
    height, width = image.shape[:2]
    new_h, new_w = fit(height, width, box)
    if (new_h, new_w) != (height, width):
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if pad_to_box:
        out_h, out_w = box
    else:
        out_h = -(-new_h // stride) * stride
        out_w = -(-new_w // stride) * stride
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    padding = ((top, out_h - new_h - top), (left, out_w - new_w - left))
    padding += ((0, 0),) * (image.ndim - 2)
    return np.pad(image, padding), Placement(top, left, new_h, new_w)


def normalize(image_rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 3xHxW, ImageNet-normalised (what the encoders were trained on)."""
    x = image_rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def prepare_frame(frame_bgr: np.ndarray, prep: Preprocess) -> tuple[np.ndarray, Placement]:
    """A BGR frame of any size -> (1x3xHxW float32 model input, where the picture sits in it)."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame_bgr.dtype} {frame_bgr.shape}")
    box = prep.box_for(*frame_bgr.shape[:2])
    padded, placement = letterbox(frame_bgr, box, prep.stride, pad_to_box=False)
    return normalize(to_rgb(padded), prep.mean, prep.std)[None], placement


def restore_size(prob: np.ndarray, placement: Placement, out_hw: tuple[int, int] | None) -> np.ndarray:
    """Cut the padding off a model-sized probability map and resize it to `out_hw` (None: no resize)."""
    top, left = placement.top, placement.left
    crop = prob[top : top + placement.height, left : left + placement.width]
    if out_hw is not None and crop.shape != tuple(out_hw):
        crop = cv2.resize(crop, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
    return crop
