"""The torch half of lib.live.segmenter.load_segmenter: .pt checkpoints, TorchScript, smp folders,
and a checkpoint converted in memory to run through another backend.

Importing this module fills lib.live.segmenter.LOADERS, so load_segmenter opens every model file
(every training entry script imports it through lib.training.configurables; webcam.py imports it
when the model file needs it). The live side never imports this module.
"""

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import segmentation_models_pytorch as smp
import torch

from lib.live.errors import UserError
from lib.live.model_info import META_KEY, ModelInfo
from lib.live.preprocess import Preprocess
from lib.live.segmenter import LOADERS, Backend, Segmenter, info_from_text, onnx_backend, onnx_session
from lib.training.model import model_from, read_checkpoint


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
    return info_from_text(text, path)


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
    return onnx_backend(onnx_session(model, device, threads, spin))


def load_backend(
    path: Path, fmt: str, device: str = "cpu", threads: int | None = None, spin: bool = True, checkpoint=None
) -> Backend:
    """A callable for a model file of the given format (no conversion). checkpoint: the (description,
    weights) of a .pt already read, so the file is read once.

    threads: intra-op threads (ONNX Runtime's session; for torch, the process-wide setting).
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    if threads and fmt != "onnx":
        torch.set_num_threads(threads)
    if fmt == "torch":
        info, state = checkpoint or read_checkpoint(path)
        return torch_backend(model_from(info, state, path), device)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch_backend(torch.jit.load(str(path), map_location="cpu"), device)
    if fmt == "smp":
        return torch_backend(smp.from_pretrained(str(path)), device)
    return _onnx_backend(path, device, threads, spin)


def load_torch_segmenter(
    path: Path, fmt: str, backend: str | None, device: str, threads: int | None, spin: bool
) -> Segmenter:
    """lib.live.segmenter.load_segmenter's path for everything but an .onnx file run as itself."""
    checkpoint = read_checkpoint(path) if fmt == "torch" else None  # description and weights, the file read once
    info = checkpoint[0] if checkpoint else read_info(path, fmt)
    if backend is None or backend == fmt or (backend == "torch" and fmt == "smp"):
        run = load_backend(path, fmt, device, threads, spin, checkpoint)
        return Segmenter(run, info, name=f"{path.name} ({fmt})")
    if checkpoint is None:
        raise UserError(f"--backend {backend}: {path} is a {fmt} file; only a .pt checkpoint can be converted")
    model = model_from(*checkpoint, path)
    if backend == "torchscript":
        if threads:
            torch.set_num_threads(threads)
        return Segmenter(torch_backend(to_torchscript(model, info.prep), device), info, name=f"{path.name} ({backend})")
    buffer = io.BytesIO()  # converted in memory: nothing written to disk
    to_onnx(model, info.prep, buffer)
    return Segmenter(_onnx_backend(buffer.getvalue(), device, threads, spin), info, name=f"{path.name} ({backend})")


LOADERS.update(dict.fromkeys(("torch", "torchscript", "smp", "onnx"), load_torch_segmenter))
