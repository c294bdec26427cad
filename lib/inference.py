"""Run a trained model on frames: the API webcam.py and evaluate.py use, for other programs too.

    from lib.inference import load_segmenter
    seg = load_segmenter("models/lite.onnx")
    prob = seg(frame_bgr)  # HxW float32 person probability in [0, 1], any frame size

One frame in, one map out, no state: temporal smoothing lives in lib.compose.
"""

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import segmentation_models_pytorch as smp
import torch

from lib.compose import guided_upsample
from lib.errors import UserError
from lib.model import load_checkpoint, read_checkpoint
from lib.model_info import META_KEY, ModelInfo
from lib.preprocess import Preprocess, prepare_frame, restore_size

BACKENDS = ("torch", "torchscript", "onnx")
Backend = Callable[[np.ndarray], np.ndarray]  # (N,3,H,W) float32 -> (N,1,H,W) logits


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


def read_info(path: Path, fmt: str) -> ModelInfo:
    """The description stored in or beside a model file."""
    if fmt == "torch":
        return read_checkpoint(path)[0]
    if fmt == "smp":
        return ModelInfo.from_json((path / f"{META_KEY}.json").read_text(), str(path))
    if fmt == "torchscript":
        extra = {f"{META_KEY}.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch 2.14 deprecates torch.jit.*; it still works
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as error:  # noqa: BLE001
            raise UserError(f"{path}: not a readable TorchScript file ({str(error)[:200]})") from None
        text = extra[f"{META_KEY}.json"]
    else:
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # noqa: BLE001
            raise UserError(f"{path}: not a readable ONNX file ({str(error)[:200]})") from None
        text = next((p.value for p in proto.metadata_props if p.key == META_KEY), "")
    if not text:
        raise UserError(
            f"{path} carries no '{META_KEY}' metadata (input size, normalisation); "
            "export it with export.py from a checkpoint of this project"
        )
    return ModelInfo.from_json(text, str(path))


def to_torchscript(model: torch.nn.Module, prep: Preprocess) -> torch.jit.ScriptModule:
    """A trace, not a script: smp's UNet++ decoder indexes a ModuleDict by computed keys, which
    torch.jit.script rejects; a trace at one size runs at every size (no shape-dependent code)."""
    example = torch.zeros(1, 3, *prep.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(model.float().eval().cpu(), example, check_trace=False)


def to_onnx(model: torch.nn.Module, prep: Preprocess, target, opset: int = 17, dynamo: bool = False) -> None:
    """Write ONNX with dynamic batch, height and width to `target` (a path or a BytesIO).

    Default: the TorchScript-based exporter at opset 17: ~1 s instead of 10-20 s for the dynamo
    exporter on this CPU, and opset 17 loads in ONNX Runtime releases back to 1.14 (phones,
    browsers). dynamo=True uses torch.export (needs onnxscript) at opset >= 18.
    """
    model = model.float().eval().cpu()
    example = torch.zeros(1, 3, *prep.input_size)
    names = {"input_names": ["image"], "output_names": ["logits"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            dim = torch.export.Dim
            shapes = {
                "x": {
                    0: dim("batch", min=1, max=256),
                    2: 32 * dim("h", min=1, max=128),
                    3: 32 * dim("w", min=1, max=128),
                }
            }
            torch.onnx.export(
                model,
                (example,),
                target,
                dynamo=True,
                external_data=False,
                opset_version=max(opset, 18),
                dynamic_shapes=shapes,
                **names,
            )
        else:
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                model,
                (example,),
                target,
                dynamo=False,
                opset_version=opset,
                dynamic_axes={"image": axes, "logits": axes},
                **names,
            )


def torch_backend(model: torch.nn.Module, device) -> Backend:
    """Puts the model in eval mode on `device`; numpy in, numpy logits out."""
    model = model.to(device).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run


def _onnx_backend(model: Path | bytes, device: str, threads: int | None, spin: bool = True) -> Backend:
    """ONNX Runtime on a file, or on the bytes of a model converted in memory."""
    options = ort.SessionOptions()
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
        session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as error:  # noqa: BLE001
        raise UserError(f"{model}: ONNX Runtime cannot load it ({str(error)[:200]})") from None
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def load_backend(path: Path, fmt: str, device: str = "cpu", threads: int | None = None, spin: bool = True) -> Backend:
    """A callable for a model file of the given format (no conversion).

    threads: intra-op threads (ONNX Runtime's session; for torch, the process-wide setting).
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    if threads and fmt != "onnx":
        torch.set_num_threads(threads)
    if fmt == "torch":
        return torch_backend(load_checkpoint(path)[0], device)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch_backend(torch.jit.load(str(path), map_location="cpu"), device)
    if fmt == "smp":
        return torch_backend(smp.from_pretrained(str(path)), device)
    return _onnx_backend(path, device, threads, spin)


def _converted_backend(path: Path, fmt: str, backend: str, device: str, threads: int | None, spin: bool) -> Backend:
    """A checkpoint run through another backend, converted in memory (nothing written to disk)."""
    if fmt != "torch":
        raise UserError(f"--backend {backend}: {path} is a {fmt} file; only a .pt checkpoint can be converted")
    model, info = load_checkpoint(path)
    if backend == "torchscript":
        if threads:
            torch.set_num_threads(threads)
        return torch_backend(to_torchscript(model, info.prep), device)
    buffer = io.BytesIO()
    to_onnx(model, info.prep, buffer)
    return _onnx_backend(buffer.getvalue(), device, threads, spin)


class Segmenter:
    """Person probability for BGR uint8 frames of any size; preprocessing from the model file."""

    def __init__(self, backend: Backend, info: ModelInfo, name: str, refine: bool = False):
        self.backend = backend
        self.info = info
        self.name = name
        self.prep = info.prep
        self.refine = refine  # scale the probability up along the frame's edges (compose.guided_upsample)

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
                    probs[i] = guided_upsample(placed, frames[i])
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
    info = read_info(path, fmt)
    if backend is None or backend == fmt or (backend == "torch" and fmt == "smp"):
        return Segmenter(load_backend(path, fmt, device, threads, spin), info, name=f"{path.name} ({fmt})")
    run = _converted_backend(path, fmt, backend, device, threads, spin)
    return Segmenter(run, info, name=f"{path.name} ({backend})")
