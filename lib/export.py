"""Export a trained model to TorchScript, ONNX and smp's own format, each checked against eager.

The metadata (architecture, input size, normalisation) goes inside each file: TorchScript as an
extra file `person_seg.json`, ONNX as metadata_props under the key `person_seg`; and beside the
smp folder as `person_seg.json`. Anything that loads the file knows how to feed it.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.errors import UserError
from lib.preprocess import Preprocess

META_KEY = "person_seg"
FORMATS = ("torchscript", "onnx", "smp", "half")
SUFFIXES = {"torchscript": ".ts", "onnx": ".onnx", "smp": "_smp", "half": "_fp16.pt"}
PARITY_TOLERANCE = 1e-4
# fp16 weights round each weight to ~3 significant digits: logits move by ~1e-3 of their size.
HALF_TOLERANCE = 5e-2


def metadata(spec: dict, prep: Preprocess, meta: dict | None = None) -> dict:
    return {"format": "person-seg", "model": spec, "preprocess": prep.to_dict(), "meta": meta or {}}


def check_sizes(prep: Preprocess) -> list[tuple[int, int]]:
    """Two input sizes for parity checks: the training box and its landscape turn, smaller when big."""
    h, w = prep.input_size
    return [(h, w), (w, h) if w != h else (h + prep.stride, w)]


def _torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).float().numpy()


def export_torchscript(model: nn.Module, info: dict, path: Path) -> Path:
    prep = Preprocess.from_dict(info["preprocess"])
    example = torch.zeros(1, 3, *prep.input_size)
    # trace, not script: smp's UNet++ decoder indexes a ModuleDict by computed keys, which
    # torch.jit.script rejects; a trace at one size runs at every size (no shape-dependent code).
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={f"{META_KEY}.json": json.dumps(info)})
    return path


def export_onnx(model: nn.Module, info: dict, path: Path, opset: int = 17, dynamo: bool = False) -> Path:
    """Dynamic batch, height and width.

    Default: the TorchScript-based exporter at opset 17: ~1 s instead of 10-20 s for the dynamo
    exporter on this CPU, and opset 17 loads in ONNX Runtime releases back to 1.14 (phones,
    browsers). dynamo=True uses torch.export (needs onnxscript) at opset >= 18.
    """
    import onnx

    prep = Preprocess.from_dict(info["preprocess"])
    example = torch.zeros(1, 3, *prep.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            dim = torch.export.Dim
            blocks = 32 * dim("h", min=1, max=128), 32 * dim("w", min=1, max=128)
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, external_data=False,
                opset_version=max(opset, 18), input_names=["image"], output_names=["logits"],
                dynamic_shapes={"x": {0: dim("batch", min=1, max=256), 2: blocks[0], 3: blocks[1]}},
            )  # fmt: skip
        else:
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes},
            )  # fmt: skip
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(info)
    onnx.save(proto, str(path))
    return path


def export_smp(model: nn.Module, info: dict, path: Path) -> Path:
    """smp's save_pretrained folder: loads with smp.from_pretrained(path)."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    (path / f"{META_KEY}.json").write_text(json.dumps(info, indent=2))
    return path


def export_half(model: nn.Module, info: dict, path: Path) -> Path:
    """A checkpoint with fp16 weights: half the size on disk; loads as fp32 everywhere."""
    from lib.model import save_checkpoint
    from lib.preprocess import Preprocess

    save_checkpoint(path, model, info["model"], Preprocess.from_dict(info["preprocess"]), info.get("meta"), half=True)
    return path


def verify(model: nn.Module, path: Path, fmt: str, sizes, seed: int = 0) -> float:
    """Max |exported - eager| over random inputs at the given sizes; raise above tolerance."""
    from lib.inference import load_backend  # the same loaders the consumers use

    backend = load_backend(path, "torch" if fmt == "half" else fmt, device="cpu")
    tolerance = HALF_TOLERANCE if fmt == "half" else PARITY_TOLERANCE
    rng = np.random.default_rng(seed)
    worst = 0.0
    for h, w in sizes:
        x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
        worst = max(worst, float(np.abs(backend(x) - _torch_logits(model, x)).max()))
    if worst > tolerance:
        raise RuntimeError(f"{path}: output differs from the eager model by {worst:.2e} (> {tolerance:g})")
    return worst


def export_all(
    model: nn.Module, info: dict, out_dir: Path, stem: str, formats, opset: int = 17, dynamo: bool = False
) -> dict:
    """Write each format as out_dir/<stem><suffix>, verify it, return {format: {path, max_abs_diff}}."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"--formats: unknown {', '.join(unknown)}; expected some of {', '.join(FORMATS)}")
    model = model.float().eval().cpu()
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = check_sizes(Preprocess.from_dict(info["preprocess"]))
    results = {}
    for fmt in formats:
        path = out_dir / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "torchscript":
            export_torchscript(model, info, path)
        elif fmt == "onnx":
            export_onnx(model, info, path, opset=opset, dynamo=dynamo)
        elif fmt == "half":
            export_half(model, info, path)
        else:
            export_smp(model, info, path)
        results[fmt] = {"path": str(path), "max_abs_diff": verify(model, path, fmt, sizes), "sizes": sizes}
    return results
