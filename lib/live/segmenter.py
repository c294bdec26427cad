"""Run a model file on frames: the API webcam.py and evaluate.py use, for other programs too.

    from lib.live.segmenter import load_segmenter
    seg = load_segmenter("models/lite.onnx")
    prob = seg(frame_bgr)  # HxW float32 person probability in [0, 1], any frame size

One frame in, one map out, no state: temporal smoothing lives in lib.live.compose. An .onnx file
runs here with ONNX Runtime alone. Other model files (.pt, .ts, an smp folder) and --backend
torch/torchscript need torch: their loaders are in LOADERS once the torch side is imported
(`import lib.training.inference`, which every training entry script does); this module never
imports it, and without it says in one line what is missing.
"""

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lib.live.compose import refined
from lib.live.errors import UserError
from lib.live.model_info import META_KEY, ModelInfo
from lib.live.preprocess import prepare_frame, restore_size

BACKENDS = ("torch", "torchscript", "onnx")
Backend = Callable[[np.ndarray], np.ndarray]  # (N,3,H,W) float32 -> (N,1,H,W) logits
FULL_INSTALL = "pip install -r requirements.txt"
# file format -> loader(path, format, backend, device, threads, spin): every format or backend that
# needs torch. lib.training.inference fills it in; the live-only install leaves it empty.
Loader = Callable[[Path, str, str | None, str, int | None, bool], "Segmenter"]
LOADERS: dict[str, Loader] = {}


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "person_seg.json").is_file() and (path / "config.json").is_file():
            return "smp"
        raise UserError(f"{path} is a folder but not an smp export (expected config.json and person_seg.json in it)")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return "torch"
    if suffix in (".ts", ".torchscript", ".jit"):
        return "torchscript"
    if suffix == ".onnx":
        return "onnx"
    raise UserError(
        f"{path}: unknown model file type {suffix!r}; expected .pt (checkpoint), .ts (TorchScript) or .onnx"
    )


def info_from_text(text: str, path: Path | str) -> ModelInfo:
    if not text:
        raise UserError(
            f"{path} carries no '{META_KEY}' metadata (input size, normalisation); "
            "export it with export.py from a checkpoint of this project"
        )
    return ModelInfo.from_json(text, str(path))


def onnx_session(model: Path | bytes, device: str, threads: int | None, spin: bool = True) -> ort.InferenceSession:
    """ONNX Runtime on a file, or on the bytes of a model converted in memory."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: a file it cannot load is reported below, in one line
    if threads:
        options.intra_op_num_threads = threads
    if not spin:  # idle threads sleep instead of spinning: frees the cores for decode/encode threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError(
                "--device cuda with the onnx backend needs onnxruntime-gpu (this onnxruntime has no CUDA provider)"
            )
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as error:  # noqa: BLE001
        raise UserError(f"{model}: ONNX Runtime cannot load it ({str(error)[:200]})") from None


def onnx_backend(session: ort.InferenceSession) -> Backend:
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


class Segmenter:
    """Person probability for BGR uint8 frames of any size; preprocessing from the model file."""

    def __init__(self, backend: Backend, info: ModelInfo, name: str, refine: bool = False):
        self.backend = backend
        self.info = info
        self.name = name
        self.prep = info.prep
        self.refine = refine  # scale the probability up along the frame's edges (compose.refined)

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.predict_many([frame_bgr])[0]

    def predict_many(self, frames: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
        """Frames that share an input shape go through the model as one batch.

        tta: also run the mirrored frame and average the two probabilities.
        """
        prepared = [prepare_frame(f, self.prep) for f in frames]
        probs: list[np.ndarray | None] = [None] * len(frames)
        shapes = {x.shape for x, _ in prepared}
        for shape in shapes:
            idx = [i for i, (x, _) in enumerate(prepared) if x.shape == shape]
            batch = np.concatenate([prepared[i][0] for i in idx])
            if tta:
                both = self.backend(np.concatenate([batch, batch[..., ::-1].copy()]))
                logits = both[: len(idx)]
                prob = (_sigmoid(logits) + _sigmoid(both[len(idx) :][..., ::-1])) / 2
            else:
                prob = _sigmoid(self.backend(batch))
            for j, i in enumerate(idx):
                if self.refine:
                    placed = restore_size(prob[j, 0], prepared[i][1], None)
                    probs[i] = refined(placed, frames[i])
                else:
                    probs[i] = restore_size(prob[j, 0], prepared[i][1], frames[i].shape[:2])
        return probs


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def load_segmenter(
    path: str | Path, backend: str | None = None, device: str = "cpu", threads: int | None = None, spin: bool = True
) -> Segmenter:
    """Load a .pt checkpoint, a TorchScript .ts, an ONNX file or an smp folder.

    backend: None picks the file's own (torch for .pt, torchscript for .ts, onnx for .onnx);
    naming another converts a .pt checkpoint on the fly (in memory).
    spin=False stops ONNX Runtime's idle threads from spinning (better when other threads
    share the cores, as in webcam.py's pipeline).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"model {path} does not exist")
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    fmt = detect_format(path)
    if fmt == "onnx" and backend in (None, "onnx"):
        session = onnx_session(path, device, threads, spin)
        info = info_from_text(session.get_modelmeta().custom_metadata_map.get(META_KEY, ""), path)
        return Segmenter(onnx_backend(session), info, name=f"{path.name} (onnx)")
    loader = LOADERS.get(fmt)
    if loader is None:
        what = f"--backend {backend}" if backend not in (None, fmt) else f"{path.name} (a {fmt} model file)"
        raise UserError(
            f"{what} needs the training stack ({missing_package() or 'torch'} is not installed): {FULL_INSTALL}; "
            "the live-only install runs .onnx models, e.g. the default models/lite_int8.onnx"
        )
    return loader(path, fmt, backend, device, threads, spin)


def missing_package() -> str | None:
    """The first package of the training stack that is not installed (found without importing it)."""
    return next((p for p in ("torch", "segmentation_models_pytorch", "gin") if not _installed(p)), None)


def _installed(package: str) -> bool:
    """gin: the gin-config package, not the repository's gin/ folder of configs (a namespace package)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")
