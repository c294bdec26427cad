"""Write a trained model as TorchScript, ONNX, smp's own folder or fp16 weights, each checked against eager.

The description (lib.model_info) goes inside each file: TorchScript as an extra file
`person_seg.json`, ONNX as metadata_props under the key `person_seg`, beside the smp folder's
weights as `person_seg.json`. Anything that loads the file knows how to feed it. Each file is
read back with the loaders its users use (lib.inference) and compared with the eager model.
"""

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from lib.errors import UserError
from lib.inference import load_backend, to_onnx, to_torchscript
from lib.model import save_checkpoint
from lib.model_info import META_KEY, ModelInfo
from lib.preprocess import Preprocess

FORMATS = ("torchscript", "onnx", "smp", "half")
SUFFIXES = {"torchscript": ".ts", "onnx": ".onnx", "smp": "_smp", "half": "_fp16.pt"}
PARITY_TOLERANCE = 1e-4
# fp16 weights round each weight to ~3 significant digits: logits move by ~1e-3 of their size.
HALF_TOLERANCE = 5e-2


def check_sizes(prep: Preprocess) -> list[tuple[int, int]]:
    """Two input sizes for parity checks: the training box and its landscape turn."""
    h, w = prep.input_size
    return [(h, w), (w, h) if w != h else (h + prep.stride, w)]


def export_torchscript(model: nn.Module, info: ModelInfo, path: Path) -> Path:
    traced = to_torchscript(model, info.prep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.14 deprecates torch.jit.*; the file still loads everywhere
        torch.jit.save(traced, str(path), _extra_files={f"{META_KEY}.json": info.to_json()})
    return path


def export_onnx(model: nn.Module, info: ModelInfo, path: Path, opset: int = 17, dynamo: bool = False) -> Path:
    to_onnx(model, info.prep, str(path), opset, dynamo)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, info.to_json()
    onnx.save(proto, str(path))
    return path


def export_smp(model: nn.Module, info: ModelInfo, path: Path) -> Path:
    """smp's save_pretrained folder: loads with smp.from_pretrained(path)."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    (path / f"{META_KEY}.json").write_text(info.to_json())
    return path


def export_half(model: nn.Module, info: ModelInfo, path: Path) -> Path:
    """A checkpoint with fp16 weights: half the size on disk; loads as fp32 everywhere."""
    save_checkpoint(path, model, info, half=True)
    return path


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx, "smp": export_smp, "half": export_half}


def _eager_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).float().numpy()


def verify(model: nn.Module, path: Path, fmt: str, sizes, seed: int = 0) -> float:
    """Max |exported - eager| over random inputs at the given sizes; raise above tolerance."""
    backend = load_backend(path, "torch" if fmt == "half" else fmt, device="cpu")
    tolerance = HALF_TOLERANCE if fmt == "half" else PARITY_TOLERANCE
    rng = np.random.default_rng(seed)
    worst = 0.0
    for h, w in sizes:
        x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
        worst = max(worst, float(np.abs(backend(x) - _eager_logits(model, x)).max()))
    if worst > tolerance:
        raise RuntimeError(f"{path}: output differs from the eager model by {worst:.2e} (> {tolerance:g})")
    return worst


def export_all(
    model: nn.Module, info: ModelInfo, out_dir: Path, stem: str, formats, opset: int = 17, dynamo: bool = False
) -> dict:
    """Write each format as out_dir/<stem><suffix>, verify it, return {format: {path, max_abs_diff, sizes}}."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"--formats: unknown {', '.join(unknown)}; expected some of {', '.join(FORMATS)}")
    model = model.float().eval().cpu()
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = check_sizes(info.prep)
    results = {}
    for fmt in formats:
        path = out_dir / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "onnx":
            export_onnx(model, info, path, opset=opset, dynamo=dynamo)
        else:
            EXPORTERS[fmt](model, info, path)
        results[fmt] = {"path": str(path), "max_abs_diff": verify(model, path, fmt, sizes), "sizes": sizes}
    return results
