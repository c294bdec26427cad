"""evaluate.py and export.py: exact metrics with a model whose answers are known, parity of every
exported format, and the bad inputs."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import ROOT, draw_pair

from lib.live.errors import UserError
from lib.live.model_info import ModelInfo, ModelSpec
from lib.live.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, prepare_frame, with_boxes
from lib.live.segmenter import load_segmenter
from lib.tools.evaluate import evaluate
from lib.training.export import export_all, export_onnx, export_torchscript, verify
from lib.training.inference import read_info
from lib.training.model import load_checkpoint


class Brightness(torch.nn.Module):
    """Person = bright pixel. On the generated photos (person >= 150, background < 90) and at the
    model's own size, its answer is exactly the true mask."""

    def forward(self, x):
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x * std + mean).mean(1, keepdim=True) - 0.47) * 50


class Everything(torch.nn.Module):
    """Says 'person' everywhere with probability sigmoid(2)."""

    def forward(self, x):
        return torch.full_like(x[:, :1], 2.0)


INFO = ModelInfo(ModelSpec("fixture", "none"), Preprocess(input_size=(64, 64)))


@pytest.fixture
def png_root(tmp_path):
    """Folder layout, lossless PNG photos at the model's input size: no resize, no JPEG blur."""
    rng = np.random.default_rng(5)
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    truths = []
    for i in range(5):
        image, mask = draw_pair(rng, 64, 64)
        cv2.imwrite(str(tmp_path / "d" / "images" / f"{i}.png"), image)
        cv2.imwrite(str(tmp_path / "d" / "masks" / f"{i}.png"), mask * 255)
        truths.append(mask)
    return tmp_path / "d", truths


def test_metrics_are_exact_with_a_known_model(tmp_path, png_root):
    root, truths = png_root
    perfect = export_onnx(Brightness(), INFO, tmp_path / "bright.onnx")
    result = evaluate(str(perfect), data=[str(root)], json_out=str(tmp_path / "out" / "m.json"), progress=False)
    for key in ("iou", "mean_iou", "dice", "pixel_acc", "boundary_f"):
        assert result[key] == pytest.approx(1.0, abs=1e-12), key
    assert result["n"] == 5
    assert result["input_size"] == list(INFO.prep.input_size)
    larger = evaluate(str(perfect), data=[str(root)], progress=False, input_size="128x96")
    assert larger["input_size"] == [128, 96] and larger["iou"] == pytest.approx(1.0, abs=1e-12)
    wide = evaluate(str(perfect), data=[str(root)], progress=False, landscape_size="64x128")
    assert wide["input_size"] == [64, 64] and wide["landscape_size"] == [64, 128]

    everything = export_onnx(Everything(), INFO, tmp_path / "all.onnx")
    result = evaluate(str(everything), data=[str(root)], json_out=str(tmp_path / "out" / "all.json"), progress=False)
    person = np.array([t.sum() for t in truths], float)
    p = 1 / (1 + np.exp(-2.0))
    assert result["iou"] == pytest.approx(person.sum() / (5 * 64 * 64))
    assert result["mean_iou"] == pytest.approx(np.mean(person / (64 * 64)))
    assert result["pixel_acc"] == pytest.approx(person.sum() / (5 * 64 * 64))
    assert result["dice"] == pytest.approx(2 * person.sum() / (person.sum() + 5 * 64 * 64))
    expected_loss = np.mean([-(f * np.log(p) + (1 - f) * np.log(1 - p)) for f in person / (64 * 64)])
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    saved = json.loads((tmp_path / "out" / "all.json").read_text())
    assert {"iou", "mean_iou", "dice", "loss", "boundary_f", "n"} <= set(saved)
    assert (tmp_path / "out" / "all_worst.png").is_file()


def test_flip_tta_runs_and_is_symmetric(tmp_path, png_root):
    root, _ = png_root
    perfect = export_torchscript(Brightness(), INFO, tmp_path / "bright.ts")
    assert evaluate(str(perfect), data=[str(root)], tta=True, progress=False)["iou"] == pytest.approx(1.0)


def test_every_format_matches_eager_at_two_sizes(tmp_path, tiny_checkpoint):
    model, info = load_checkpoint(tiny_checkpoint)
    results = export_all(model, info, tmp_path, "tiny", ["torchscript", "onnx", "smp", "half"])
    assert results["half"]["max_abs_diff"] < 5e-2  # fp16 weights: close, not exact
    assert (tmp_path / "tiny_fp16.pt").stat().st_size < 0.6 * tiny_checkpoint.stat().st_size
    for fmt, r in results.items():
        if fmt == "half":
            continue
        assert r["max_abs_diff"] < 1e-4, fmt
        assert r["sizes"] == [(64, 64), (96, 64)]
        suffix = {"torchscript": ".ts", "onnx": ".onnx", "smp": "_smp"}[fmt]
        assert read_info(tmp_path / f"tiny{suffix}", fmt).prep == info.prep
    # the frame-level API gives the same probabilities through every format, any frame size
    frames = [np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((48, 80), (100, 60))]
    reference = [load_segmenter(tiny_checkpoint)(f) for f in frames]
    for path in (tmp_path / "tiny.ts", tmp_path / "tiny.onnx", tmp_path / "tiny_smp"):
        seg = load_segmenter(path)
        for frame, ref in zip(frames, reference, strict=True):
            prob = seg(frame)
            assert prob.shape == frame.shape[:2] and prob.dtype == np.float32
            assert np.abs(prob - ref).max() < 1e-5
    import segmentation_models_pytorch as smp

    assert isinstance(smp.from_pretrained(str(tmp_path / "tiny_smp")), torch.nn.Module)


def test_a_landscape_box_travels_in_every_file_and_feeds_wide_frames(tmp_path, tiny_checkpoint):
    """A file may run pictures wider than tall at a larger box than its portrait box turned: every
    format keeps the box, checks parity at it, and a wide frame goes in at that box."""
    model, info = load_checkpoint(tiny_checkpoint)
    info = ModelInfo(info.spec, Preprocess(input_size=(64, 64), landscape_size=(96, 128)), info.meta)
    results = export_all(model, info, tmp_path, "wide", ["torchscript", "onnx", "half"])
    assert results["onnx"]["sizes"] == [(64, 64), (96, 64), (96, 128)]
    wide, tall = np.zeros((120, 200, 3), np.uint8), np.zeros((200, 120, 3), np.uint8)
    for name, fmt in (("wide.ts", "torchscript"), ("wide.onnx", "onnx"), ("wide_fp16.pt", "half")):
        prep = read_info(tmp_path / name, "torch" if fmt == "half" else fmt).prep
        assert prep.landscape_size == (96, 128) and prep.input_size == (64, 64), name
        assert prepare_frame(wide, prep)[0].shape == (1, 3, 96, 128)  # 77x128 of picture, padded to the stride
        assert prepare_frame(tall, prep)[0].shape == (1, 3, 64, 64)  # portrait: the box as trained
    # the flags: --input-size drops the file's landscape box, --landscape-size sets it alone
    assert with_boxes(prep, "128x96", None) == Preprocess(input_size=(128, 96))
    assert with_boxes(prep, None, "64x96").box_for(100, 200) == (64, 96)
    assert with_boxes(prep, None, None) == prep
    # a file written before the field existed reads as before, and writes no new key
    old = Preprocess(input_size=(64, 64)).to_dict()
    assert "landscape_size" not in old and Preprocess.from_dict(old).box_for(100, 200) == (64, 64)


def test_parity_failure_is_reported(tmp_path, tiny_checkpoint):
    model, info = load_checkpoint(tiny_checkpoint)
    path = export_onnx(model, info, tmp_path / "m.onnx")
    with torch.no_grad():
        model.segmentation_head[0].bias += 0.01  # the eager model moved on; the file did not
    with pytest.raises(RuntimeError, match="differs from the eager model"):
        verify(model, path, "onnx", [(64, 64)])


def test_exported_onnx_scores_like_the_checkpoint(tmp_path, tiny_checkpoint, png_root):
    root, _ = png_root
    model, info = load_checkpoint(tiny_checkpoint)
    onnx_path = export_onnx(model, info, tmp_path / "tiny.onnx")
    from_pt = evaluate(str(tiny_checkpoint), data=[str(root)], progress=False)
    from_onnx = evaluate(str(onnx_path), data=[str(root)], progress=False)
    from_converted = evaluate(str(tiny_checkpoint), data=[str(root)], backend="onnx", progress=False)
    for key in ("iou", "mean_iou", "dice", "boundary_f", "loss"):
        assert from_onnx[key] == pytest.approx(from_pt[key], abs=1e-4), key
        assert from_converted[key] == pytest.approx(from_onnx[key], abs=1e-9), key


def test_bad_inputs(tmp_path, tiny_checkpoint, png_root):
    root, _ = png_root
    with pytest.raises(UserError, match="does not exist"):
        evaluate(str(tmp_path / "missing.pt"), data=[str(root)])
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(UserError, match="could not be read"):
        evaluate(str(tmp_path / "corrupt.pt"), data=[str(root)])
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        evaluate(str(tmp_path / "foreign.pt"), data=[str(root)])
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(UserError, match="unknown model file type '.h5'"):
        evaluate(str(tmp_path / "model.h5"))
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(UserError, match="no usable image/mask pairs"):
        evaluate(str(tiny_checkpoint), data=[str(tmp_path / "empty")])
    with pytest.raises(UserError, match="no run folder with split lists"):
        evaluate(str(tiny_checkpoint))
    with pytest.raises(UserError, match="--split test with --data"):
        evaluate(str(tiny_checkpoint), data=[str(root)], split="test")
    bare = torch.nn.Conv2d(3, 1, 1)
    torch.onnx.export(bare, (torch.zeros(1, 3, 8, 8),), str(tmp_path / "bare.onnx"), dynamo=False)
    with pytest.raises(UserError, match="carries no 'person_seg' metadata"):
        evaluate(str(tmp_path / "bare.onnx"), data=[str(root)])


def test_a_photo_broken_after_the_split_is_named(tmp_path, tiny_checkpoint, png_root):
    root, _ = png_root
    (root / "images" / "3.png").write_bytes(b"broken")
    lines = ["# root\timage\tmask\tlayout"] + [f"{root}\timages/{i}.png\tmasks/{i}.png\tfolder" for i in range(5)]
    (tmp_path / "weights").mkdir()
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "test.tsv").write_text("\n".join(lines) + "\n")
    ckpt = tmp_path / "weights" / "m.pt"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(UserError, match=r"images/3.png: not a readable image$"):
        evaluate(str(ckpt), num_workers=2, progress=False)


def test_split_the_run_never_wrote(tmp_path, tiny_checkpoint, png_root):
    run = tmp_path / "exp1"
    (run / "weights").mkdir(parents=True)
    (run / "splits").mkdir()
    root, _ = png_root
    lines = ["# root\timage\tmask\tlayout", f"{root}\timages/0.png\tmasks/0.png\tfolder"]
    (run / "splits" / "test.tsv").write_text("\n".join(lines) + "\n")
    ckpt = run / "weights" / "best.pt"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    assert evaluate(str(ckpt), progress=False)["n"] == 1  # found through the run folder
    assert (run / "pics" / "eval_test_best_pt_worst.png").is_file()
    with pytest.raises(UserError, match="never wrote val.tsv"):
        evaluate(str(ckpt), split="val")


@pytest.mark.slow
def test_cli_reports_bad_input_without_traceback(tmp_path):
    for script, args in (
        ("evaluate.py", ["--ckpt", str(tmp_path / "nope.pt")]),
        ("export.py", ["--ckpt", str(tmp_path / "nope.onnx")]),
    ):
        proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


class BrightnessConv(torch.nn.Module):
    """Brightness as a 1x1 convolution (what int8 quantization works on): the same answer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(50 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) / 3)
            self.conv.bias.fill_(50 * (sum(IMAGENET_MEAN) / 3 - 0.47))

    def forward(self, x):
        return self.conv(x)


class Strided(torch.nn.Module):
    """A stem at full and half resolution, then a convolution at a quarter."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, 2, 1))
        self.head = torch.nn.Conv2d(8, 1, 1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.head(self.stem(x)), size=x.shape[2:])


def test_int8_keeps_the_stem_in_fp32_and_quantizes_the_rest(tmp_path, png_root, monkeypatch):
    """The stem (full and half resolution) costs the most IoU when rounded: it stays fp32; the rest is int8."""
    import onnx

    import lib.training.export

    monkeypatch.setattr(lib.training.export, "INT8_MIN_AGREEMENT", 0.0)  # an untrained network: its masks say nothing

    root, _ = png_root
    frames = [cv2.imread(str(p)) for p in sorted((root / "images").glob("*.png"))]
    torch.manual_seed(0)
    export_all(Strided().eval(), INFO, tmp_path, "s", ["int8"], calibration=frames[:3], check_frames=frames[:3])
    ops = [node.op_type for node in onnx.load(str(tmp_path / "s_int8.onnx")).graph.node]
    assert ops.count("Conv") == 2 and ops.count("QLinearConv") == 1, ops


def test_int8_export_is_calibrated_checked_and_scores_like_fp32(tmp_path, png_root, monkeypatch):
    import lib.training.export

    root, _ = png_root
    frames = [cv2.imread(str(p)) for p in sorted((root / "images").glob("*.png"))]
    results = export_all(BrightnessConv(), INFO, tmp_path, "b", ["int8", "onnx"], calibration=frames[:3],
                         check_frames=frames[3:])  # fmt: skip
    assert results["int8"]["mask_agreement"] > 0.99 and results["int8"]["frames"] == 2
    assert "int8 static" in read_info(tmp_path / "b_int8.onnx", "onnx").meta["quantized"]
    int8 = evaluate(str(tmp_path / "b_int8.onnx"), data=[str(root)], progress=False)
    fp32 = evaluate(str(tmp_path / "b.onnx"), data=[str(root)], progress=False)
    assert fp32["iou"] == pytest.approx(1.0) and int8["iou"] > fp32["iou"] - 0.003
    with pytest.raises(UserError, match="needs calibration photos"):
        export_all(BrightnessConv(), INFO, tmp_path, "c", ["int8"])
    monkeypatch.setattr(lib.training.export, "INT8_MIN_AGREEMENT", 1.01)  # a bar no model clears: the check must fail
    with pytest.raises(RuntimeError, match="agree with fp32's by IoU"):
        export_all(BrightnessConv(), INFO, tmp_path, "d", ["int8"], calibration=frames)
