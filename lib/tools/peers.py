"""Peers to beat, behind the interface of lib.training.inference.Segmenter.

    from lib.tools.peers import MediaPipeSelfie
    peer = MediaPipeSelfie("../shared/peers/mediapipe_selfie/selfie_segmentation.tflite", threads=2)
    prob = peer(frame_bgr)  # HxW float32 person probability in [0, 1] at the frame's size

Three peers, each run the way its authors run it (../shared/peers/*/README.md): MediaPipe's selfie
segmenter (general and landscape models), Google Meet's segmenter (v679 "full") and PaddleSeg's
PP-HumanSeg V1-Lite. The two tflite models run through ai-edge-litert, which is optional (not in
requirements.txt): only the peers need it; PP-HumanSeg is an ONNX file for ONNX Runtime.
lib/tools/compare.py (python -m scripts.compare_peers) scores our models and the peers on the same
photos, per data root. For comparison only: nothing here is ever a training target.
"""

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from lib.live.errors import UserError
from lib.live.preprocess import Preprocess, letterbox, to_rgb

LANDSCAPE_FILE = "selfie_segmentation_landscape.tflite"
# where the project's development machines keep the peers (a clone has no ../shared: pass paths)
PEER_FILES = {
    "mediapipe": "../shared/peers/mediapipe_selfie/selfie_segmentation.tflite",
    "meet": "../shared/peers/meet_segmentation/segm_full_v679.tflite",
    "pphumanseg": "../shared/peers/pphumanseg/ppseg_lite_portrait_398x224_with_softmax_fixed.onnx",
}


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


class Peer:
    """What every peer shares: frames one at a time, optional mirrored-frame averaging."""

    name = "peer"

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.predict_many([frame_bgr])[0]

    def predict_many(self, frames: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
        """One frame at a time (the models take a batch of one). tta: average with the mirrored frame."""
        probs = []
        for frame in frames:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"expected an HxWx3 uint8 BGR frame, got {frame.dtype} {frame.shape}")
            prob = self._predict(frame)
            if tta:
                prob = (prob + self._predict(np.ascontiguousarray(frame[:, ::-1]))[:, ::-1]) / 2
            probs.append(prob)
        return probs

    def _predict(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _squashed_rgb(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """The whole frame stretched to the model's input, bilinear, RGB in [0, 1] (MediaPipe's and Meet's way)."""
    x = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    return to_rgb(x).astype(np.float32) / 255.0


def _to_frame(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(np.clip(prob, 0.0, 1.0).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


class MediaPipeSelfie(Peer):
    """Google's MediaPipe selfie segmenter with the interface of lib.training.inference.Segmenter.

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

    def __init__(
        self, model_path: str | Path, threads: int | None = None, make_interpreter=None, landscape: bool = True
    ):
        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"MediaPipe model {path} does not exist (see ../shared/peers/mediapipe_selfie/README.md)")
        make_interpreter = make_interpreter or _litert_interpreter(threads)
        self.general = make_interpreter(str(path))
        beside = path.with_name(LANDSCAPE_FILE)
        use_landscape = landscape and beside.is_file() and beside != path
        self.landscape = make_interpreter(str(beside)) if use_landscape else None
        self.name = "MediaPipe selfie (tflite)" if landscape else "MediaPipe selfie, general model only (tflite)"
        # webcam.py's loop scales each frame to fit this box before calling (256x192 for 4:3):
        # what MediaPipe's own pipeline hands its model, which then squashes it to its input
        self.prep = Preprocess(input_size=(256, 256))

    def _predict(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        interpreter = self.landscape if w > h and self.landscape is not None else self.general
        source = interpreter.get_input_details()[0]
        in_h, in_w = (int(s) for s in source["shape"][1:3])
        interpreter.set_tensor(source["index"], _squashed_rgb(frame, in_h, in_w)[None])  # MediaPipe's CPU path
        interpreter.invoke()
        prob = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, :, :, 0]
        return _to_frame(prob, h, w)


class MeetSegmentation(Peer):
    """Google Meet's browser segmenter (v679 "full", ../shared/peers/meet_segmentation/README.md): the
    whole frame stretched to 256x144 RGB in [0, 1], two logits per pixel, softmax channel 1 = person."""

    def __init__(self, model_path: str | Path, threads: int | None = None, make_interpreter=None):
        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"Meet model {path} does not exist (see ../shared/peers/meet_segmentation/README.md)")
        self.interpreter = (make_interpreter or _litert_interpreter(threads))(str(path))
        self.name = "Google Meet v679 (tflite)"
        self.prep = Preprocess(input_size=(256, 144))

    def _predict(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        source = self.interpreter.get_input_details()[0]
        in_h, in_w = (int(s) for s in source["shape"][1:3])
        self.interpreter.set_tensor(source["index"], _squashed_rgb(frame, in_h, in_w)[None])
        self.interpreter.invoke()
        logits = self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"])[0]
        logits = logits - logits.max(-1, keepdims=True)  # a stable softmax
        prob = np.exp(logits[..., 1]) / np.exp(logits).sum(-1)
        return _to_frame(prob, h, w)


class PPHumanSeg(Peer):
    """PaddleSeg's PP-HumanSeg V1-Lite portrait model (../shared/peers/pphumanseg/README.md), an ONNX
    file: the frame letterboxed into 398x224 (its authors' way for a landscape model), RGB normalised
    to [-1, 1], softmax output channel 1 = person, the padding cut off again."""

    def __init__(self, model_path: str | Path, threads: int | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise UserError(f"PP-HumanSeg model {path} does not exist (see ../shared/peers/pphumanseg/README.md)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        _, _, self.in_h, self.in_w = self.session.get_inputs()[0].shape
        self.name = "PP-HumanSeg V1-Lite (onnx)"
        self.prep = Preprocess(input_size=(self.in_h, self.in_w))

    def _predict(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        canvas, where = letterbox(frame, (self.in_h, self.in_w), pad_to_box=True, interpolation=cv2.INTER_LINEAR)
        x = (to_rgb(canvas).astype(np.float32) / 255.0 - 0.5) / 0.5
        prob = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0][0, 1]
        prob = prob[where.top : where.top + where.height, where.left : where.left + where.width]
        return _to_frame(prob, h, w)
