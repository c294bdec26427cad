"""Write a trained model as TorchScript, ONNX, smp's own folder or fp16 weights, each checked against eager.

The description (lib.live.model_info) goes inside each file: TorchScript as an extra file
`person_seg.json`, ONNX as metadata_props under the key `person_seg`, beside the smp folder's
weights as `person_seg.json`. Anything that loads the file knows how to feed it. Each file is
read back with the loaders its users use (lib.training.inference) and compared with the eager model.
"""

import logging
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from lib.live.compose import fit_background
from lib.live.errors import UserError
from lib.live.files import write_atomic
from lib.live.model_info import META_KEY, ModelInfo
from lib.live.preprocess import Preprocess, prepare_frame
from lib.training.inference import load_backend, read_info, to_onnx, to_torchscript
from lib.training.model import save_checkpoint
from lib.training.pairs import Pair, read_photo

FORMATS = ("torchscript", "onnx", "smp", "half", "int8")
SUFFIXES = {"torchscript": ".ts", "onnx": ".onnx", "smp": "_smp", "half": "_fp16.pt", "int8": "_int8.onnx"}
PARITY_TOLERANCE = 1e-4
# fp16 weights round each weight to ~3 significant digits: logits move by ~1e-3 of their size, so
# fp16 is held to a share of the largest logit (a trained model's reach +-20 and more).
HALF_TOLERANCE = 2e-2
# int8 rounds every activation too: its masks are held to the fp32 model's by IoU, not by logits.
INT8_MIN_AGREEMENT = 0.97


def check_sizes(prep: Preprocess) -> list[tuple[int, int]]:
    """Input sizes for parity checks: the training box, its landscape turn, and the file's landscape box."""
    h, w = prep.input_size
    sizes = [(h, w), (w, h) if w != h else (h + prep.stride, w)]
    return sizes + ([prep.landscape_size] if prep.landscape_size and prep.landscape_size not in sizes else [])


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


def webcam_like_frames(pairs: list[Pair], n: int) -> list[np.ndarray]:
    """n photos spread over `pairs`, two in three cropped to a landscape frame, 4:3 (640x480) and
    16:9 (854x480) in turn: int8 ranges then cover the shapes the model is fed, each at its box."""
    chosen = pairs[:: max(1, len(pairs) // n)][:n]
    frames = []
    for i, pair in enumerate(chosen):
        try:
            image = read_photo(pair.image_path)
        except OSError as error:
            raise UserError(f"{error} (a calibration photo)") from None
        frames.append(image if i % 3 == 0 else fit_background(image, (480, 640) if i % 3 == 1 else (480, 854)))
    return frames


class _Frames(CalibrationDataReader):
    def __init__(self, frames: list[np.ndarray], prep: Preprocess):
        self.inputs = iter([{"image": prepare_frame(frame, prep)[0]} for frame in frames])

    def get_next(self):
        return next(self.inputs, None)


def export_int8(model: nn.Module, info: ModelInfo, path: Path, calibration: list[np.ndarray]) -> Path:
    """ONNX with int8 weights (per output channel) and uint8 activations, calibrated on real frames.

    Static quantization: the activations' ranges come from `calibration` (BGR photos and frames,
    both orientations, as the webcam feeds them), so nothing is measured at run time. About twice
    as fast as fp32 on a CPU with AVX2 or VNNI integer kernels.

    Weights keep 7 bits (reduce_range): ONNX Runtime's u8s8 kernels on AVX2/AVX-512 CPUs without
    VNNI add two uint8*int8 products in a 16-bit register (vpmaddubsw), which saturates with full
    8-bit weights; the same file then gives other masks on a laptop than on the machine that
    checked it (agreement with fp32 0.874 on an emulated Haswell against 0.988 with VNNI). With
    7-bit weights 2*255*64 fits, so every x86 CPU computes the same masks (models/README.md, int8).
    The stem (the convolutions that read the picture at full or half resolution) stays fp32: its
    rounding cost the most IoU (0.011 on real video) for little time (10.0 -> 10.7 ms a frame).
    """
    if not calibration:
        raise UserError("--formats int8 needs calibration photos (--calibration-data ROOT, or a run's train split)")
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        to_onnx(model, info.prep, str(fp32))
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # one warning per shape tensor it leaves alone
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared), str(path), _Frames(calibration, info.prep), quant_format=QuantFormat.QOperator,
                per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, reduce_range=True,
                nodes_to_exclude=stem_convs(prepared, info.prep.input_size),
            )  # fmt: skip
        finally:
            logging.getLogger().setLevel(quiet)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    meta = {"quantized": f"int8 static, per-channel 7-bit weights, fp32 stem, calibrated on {len(calibration)} frames"}
    entry.key, entry.value = META_KEY, info.with_meta(**meta).to_json()
    onnx.save(proto, str(path))
    return path


def stem_convs(path: Path, input_size: tuple[int, int]) -> list[str]:
    """The Conv nodes, in graph order, before the first that reads a map smaller than half the input."""
    proto = onnx.load(str(path))
    height, width = input_size
    for dim, value in zip(proto.graph.input[0].type.tensor_type.shape.dim, (1, 3, height, width), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    graph = onnx.shape_inference.infer_shapes(proto).graph
    heights = {v.name: v.type.tensor_type.shape.dim[2].dim_value for v in [*graph.value_info, *graph.input]
               if len(v.type.tensor_type.shape.dim) == 4}  # fmt: skip
    stem = []
    for node in (n for n in graph.node if n.op_type == "Conv"):
        if 2 * heights.get(node.input[0], 0) < height:
            break
        stem.append(node.name)
    return stem


def mask_agreement(model: nn.Module, path: Path, frames: list[np.ndarray], prep: Preprocess) -> float:
    """IoU between the exported file's person masks and the eager model's, over `frames`."""
    backend = load_backend(path, "onnx", device="cpu")
    inter = union = 0
    for frame in frames:
        x = prepare_frame(frame, prep)[0]
        ours, eager = backend(x) > 0, _eager_logits(model, x) > 0
        inter, union = inter + np.count_nonzero(ours & eager), union + np.count_nonzero(ours | eager)
    return inter / max(union, 1)


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx, "smp": export_smp, "half": export_half}


def _eager_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).float().numpy()


def verify(model: nn.Module, path: Path, fmt: str, sizes, seed: int = 0) -> float:
    """Max |exported - eager| over random inputs at the given sizes; raise above tolerance."""
    backend = load_backend(path, "torch" if fmt == "half" else fmt, device="cpu")
    rng = np.random.default_rng(seed)
    worst, largest = 0.0, 1.0
    for h, w in sizes:
        x = rng.standard_normal((2, 3, h, w), dtype=np.float32)
        eager = _eager_logits(model, x)
        worst, largest = max(worst, float(np.abs(backend(x) - eager).max())), max(largest, float(np.abs(eager).max()))
    tolerance = HALF_TOLERANCE * largest if fmt == "half" else PARITY_TOLERANCE
    if worst > tolerance:
        raise RuntimeError(f"{path}: output differs from the eager model by {worst:.2e} (> {tolerance:g})")
    return worst


def export_all(
    model: nn.Module,
    info: ModelInfo,
    out_dir: Path,
    stem: str,
    formats,
    opset: int = 17,
    dynamo: bool = False,
    calibration: list[np.ndarray] | None = None,
    check_frames: list[np.ndarray] | None = None,
) -> dict:
    """Write each format as out_dir/<stem><suffix>, verify it, return {format: {path, check...}}.

    int8 needs `calibration` frames and is checked by mask agreement (IoU with the fp32 masks) on
    `check_frames` (other photos than the calibration's), at least INT8_MIN_AGREEMENT.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"--formats: unknown {', '.join(unknown)}; expected some of {', '.join(FORMATS)}")
    model = model.float().eval().cpu()
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = check_sizes(info.prep)

    def made(fmt: str, tmp: Path) -> dict:
        """One format written at `tmp` and read back; the check's numbers."""
        if fmt == "int8":
            export_int8(model, info, tmp, calibration or [])
            frames = check_frames or calibration
            return {"mask_agreement": check_int8(model, tmp, frames, info.prep), "frames": len(frames)}
        if fmt == "onnx":
            export_onnx(model, info, tmp, opset=opset, dynamo=dynamo)
        else:
            EXPORTERS[fmt](model, info, tmp)
        return {"max_abs_diff": verify(model, tmp, fmt, sizes), "sizes": sizes}

    results = {}
    for fmt in formats:
        # written and checked under a temporary name, renamed only once it passed: a failed or
        # short write (a full disk) leaves whatever file was there before
        path = out_dir / f"{stem}{SUFFIXES[fmt]}"
        results[fmt] = {"path": str(path)} | write_atomic(path, partial(made, fmt))
    return results


def matches(model: nn.Module, info: ModelInfo, path: Path, fmt: str) -> tuple[float | None, str]:
    """Whether an export already at `path` is this model's: it describes the same network and input
    (spec and preprocessing; the meta may differ) and its output matches eager as a new export's
    must (verify). (max |diff|, "") when it does, (None, why not) when it does not."""

    def why(error: Exception) -> str:  # the reason alone: the caller names the file
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return text.removeprefix(f"{path}: ")

    if fmt == "int8":
        return None, "an int8 export is checked only when it is made, on calibration photos"
    try:
        theirs = read_info(path, "torch" if fmt == "half" else fmt)
    except (UserError, OSError, ValueError, RuntimeError) as error:
        return None, why(error)
    if theirs.spec.to_dict() != info.spec.to_dict() or theirs.prep.to_dict() != info.prep.to_dict():
        return None, f"it describes {theirs.spec} at input {theirs.prep.input_size}"
    try:
        return verify(model, path, fmt, check_sizes(info.prep)), ""
    except (UserError, OSError, ValueError, RuntimeError) as error:
        return None, why(error)


def check_int8(model: nn.Module, path: Path, frames: list[np.ndarray], prep: Preprocess) -> float:
    agreement = mask_agreement(model, path, frames, prep)
    if agreement < INT8_MIN_AGREEMENT:
        raise RuntimeError(f"{path}: its masks agree with fp32's by IoU {agreement:.4f} (< {INT8_MIN_AGREEMENT})")
    return agreement
