"""Peers to beat, behind the interface of lib.inference.Segmenter.

    from lib.peers import MediaPipeSelfie
    peer = MediaPipeSelfie("../shared/peers/mediapipe_selfie/selfie_segmentation.tflite", threads=2)
    prob = peer(frame_bgr)  # HxW float32 person probability in [0, 1] at the frame's size

MediaPipe's model runs through ai-edge-litert, which is optional (not in requirements.txt): only
the peer needs it. lib/compare.py (python -m scripts.compare_peers) scores our models and the peer
on the same photos, per data root.
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from lib.errors import UserError
from lib.preprocess import Preprocess

LANDSCAPE_FILE = "selfie_segmentation_landscape.tflite"


def _litert_interpreter(threads: int | None) -> Callable[[str], object]:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UserError(
            "MediaPipe's selfie segmenter needs ai-edge-litert: pip install ai-edge-litert; "
            "it is optional, not in requirements.txt"
        ) from None

    def make(path: str):
        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
        return interpreter

    return make


class MediaPipeSelfie:
    """Google's MediaPipe selfie segmenter with the interface of lib.inference.Segmenter.

    Which model: `model_path` (the general model, 256x256 input) for portrait and square frames.
    Landscape frames (width > height) go through the landscape model (144x256 input, MediaPipe's
    model for landscape video) when `selfie_segmentation_landscape.tflite` lies beside
    `model_path`; without that file they go through the general model too. MediaPipe itself leaves
    the choice to the caller; here the frame's orientation makes it.
    Preprocessing is MediaPipe's own: the frame is squashed to the model's input (no letterbox),
    bilinearly, as RGB in [0, 1]; the probability is resized back to the frame bilinearly.

    make_interpreter: path -> an object with the tflite Interpreter's get_input_details,
    get_output_details, set_tensor, invoke and get_tensor, tensors allocated. Default: ai-edge-litert's.
    """

    def __init__(self, model_path: str | Path, threads: int | None = None, make_interpreter=None):
        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"MediaPipe model {path} does not exist (see ../shared/peers/mediapipe_selfie/README.md)")
        make_interpreter = make_interpreter or _litert_interpreter(threads)
        self.general = make_interpreter(str(path))
        landscape = path.with_name(LANDSCAPE_FILE)
        self.landscape = make_interpreter(str(landscape)) if landscape.is_file() and landscape != path else None
        self.name = "MediaPipe selfie (tflite)"
        # webcam.py's loop scales each frame to fit this box before calling (256x192 for 4:3):
        # what MediaPipe's own pipeline hands its model, which then squashes it to its input
        self.prep = Preprocess(input_size=(256, 256))

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.predict_many([frame_bgr])[0]

    def predict_many(self, frames: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
        """One frame at a time (the models take a batch of one). tta: average with the mirrored frame."""
        probs = []
        for frame in frames:
            prob = self._predict(frame)
            if tta:
                prob = (prob + self._predict(np.ascontiguousarray(frame[:, ::-1]))[:, ::-1]) / 2
            probs.append(prob)
        return probs

    def _predict(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        interpreter = self.landscape if w > h and self.landscape is not None else self.general
        source = interpreter.get_input_details()[0]
        in_h, in_w = (int(s) for s in source["shape"][1:3])
        x = cv2.resize(frame, (in_w, in_h), interpolation=cv2.INTER_LINEAR)  # MediaPipe's CPU path is bilinear
        x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        interpreter.set_tensor(source["index"], x[None])
        interpreter.invoke()
        prob = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, :, :, 0]
        prob = cv2.resize(np.clip(prob, 0.0, 1.0).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return prob
