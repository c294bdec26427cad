"""Every kind of bad input and fault a user can meet, through the command lines, one table.

Each case runs train.py, evaluate.py or export.py (in this process, as `python <script>` would:
run_cli prints the one line and sets the exit status; the slow variant below runs real
subprocesses) and checks: the exit status, the one line naming the file or flag, no traceback,
nothing the user had changed, no run folder left (the last two: every file under the test's
folder, before and after, byte for byte, unless the case is meant to change something).
"""

import errno
import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from helpers import (
    LATIN1,
    ROOT,
    TINY,
    device_node,
    draw_pair,
    latin1_names,
    make_aisegment,
    make_folder,
    node_kind,
    outcome,
    reset,
    restyle_masks,
)
from PIL import Image

import lib
from lib.training.config import parse
from lib.training.export import export_all
from lib.training.model import load_checkpoint


@dataclass
class Case:
    script: str
    args: list  # strings; "{name}" is filled from the context (paths made by the fixtures)
    code: int
    line: str  # a fragment of the one line the user reads (error:, warning: or note:)
    changes: tuple = ()  # paths (relative to the test folder) the case may change
    needs: tuple = field(default_factory=tuple)  # fixtures beyond the basic ones: "readonly", "full", "run", ...
    absent: tuple = ()  # paths (relative to the test folder) that must not be there afterwards


SMOKE = str(ROOT / "gin" / "smoke.gin")
TRAIN = ["--gin", SMOKE, "--gin-param", "make_splits.roots = ['{aiseg}', '{folder}']"]
for binding in ("train.run_root = '{exps}'", *TINY):
    TRAIN += ["--gin-param", binding]


def tr(binding: str, line: str, code: int = 2, **kw) -> Case:
    """train.py on the tiny recipe with one binding more."""
    return Case("train.py", [*TRAIN, "--gin-param", binding], code, line, **kw)


def cli(script: str, flags: str, code: int, line: str, **kw) -> Case:
    """`script` with space-separated flags (the context's paths hold no spaces)."""
    return Case(script, flags.split(), code, line, **kw)


def ev(flags: str, code: int, line: str, **kw) -> Case:
    return cli("evaluate.py", flags, code, line, **kw)


def ex(flags: str, code: int, line: str, **kw) -> Case:
    return cli("export.py", "--ckpt {ckpt} " + flags, code, line, **kw)


READ_ONLY = "cannot write there: read-only file system (EROFS)"
CASES = {
    # data
    "missing data root": tr("make_splits.roots = ['/nowhere']", "data root /nowhere does not exist"),
    "root in neither layout": tr("make_splits.roots = ['{empty}']", "expected clip_img/ and matting/"),
    "empty dataset": tr("make_splits.roots = ['{nothing}']", "has no usable image/mask pairs"),
    "split larger than the data": tr("make_splits.split = (50, 2, 2)", "asks for 54 pairs"),
    "split without validation": tr("make_splits.split = (0.5, 0.0, 0.5)", "no validation pairs"),
    # gin
    "unknown gin parameter": tr("train.lrr = 1", "gin config: "),
    "unknown configurable": tr("nope.x = 1", "No configurable matching 'nope'"),
    "value without quotes": tr("build_model.arch = Unet", "strings need quotes"),
    "unclosed bracket": tr("train.epochs = (5", "a bracket is never closed"),
    "binding the program passes": tr("train.resume = 'x'", "train.resume cannot be set"),
    "missing --gin file": cli("train.py", "--gin {tmp}/nope.gin", 2, "nope.gin: no such file"),
    "include of a missing file": cli("train.py", "--gin {missing_include}", 2, "line 2: include 'nowhere.gin'"),
    "include loop": cli("train.py", "--gin {loop_a}", 2, "b.gin, line 1: include '{loop_a}' makes a loop"),
    # network
    "unknown encoder": tr("build_model.encoder_name = 'resnet999'", "resnet999"),
    "unknown architecture": tr("build_model.arch = 'Unet3D'", "is not an smp architecture"),
    "encoder weights missing": tr("build_model.encoder_weights = '/nowhere/enc.pt'", "no such file"),
    "init_from missing": tr("build_model.init_from = '/nowhere/m.pt'", "init_from='/nowhere/m.pt': no such file"),
    "init_from of another network": tr("build_model.init_from = '{ckpt_other}'", "this run builds"),
    # every number a user sets
    "batch_size 0": tr("build_dataloaders.batch_size = 0", "build_dataloaders.batch_size=0: expected"),
    "input_size not a multiple of 32": tr("build_dataloaders.input_size = (100, 64)", "multiples of 32"),
    "input_size not a pair": tr("build_dataloaders.input_size = 64", "input_size=64: expected (height, width)"),
    "num_workers -1": tr("build_dataloaders.num_workers = -1", "build_dataloaders.num_workers=-1"),
    "augment_strength -1": tr("build_dataloaders.augment_strength = -1", "augment_strength=-1"),
    "epochs 0": tr("train.epochs = 0", "train.epochs=0: expected a whole number >= 1"),
    "lr -1": tr("train.lr = -1", "train.lr=-1: expected a number > 0"),
    "lr not a number": tr("train.lr = 'fast'", "train.lr='fast': expected a number"),
    "weight_decay -0.1": tr("train.weight_decay = -0.1", "train.weight_decay=-0.1"),
    "warmup_steps -1": tr("train.warmup_steps = -1", "train.warmup_steps=-1"),
    "grad_accum 0": tr("train.grad_accum = 0", "train.grad_accum=0"),
    "max_steps 0": tr("train.max_steps = 0", "train.max_steps=0"),
    "max_minutes 0": tr("train.max_minutes = 0", "train.max_minutes=0"),
    "clip_grad_norm -1": tr("train.clip_grad_norm = -1", "train.clip_grad_norm=-1"),
    "keep_checkpoints 0": tr("train.keep_checkpoints = 0", "train.keep_checkpoints=0"),
    "log_every 0": tr("train.log_every = 0", "train.log_every=0"),
    "pics_every 0": tr("train.pics_every = 0", "train.pics_every=0"),
    # where a run writes
    "run_root is a file": tr("train.run_root = '{a_file}'", "is a file; expected a folder"),
    "run_root read-only": tr("train.run_root = '{readonly}/exps'", READ_ONLY, needs=("readonly",)),
    # resume
    "resume a folder without checkpoints": cli("train.py", "--resume {empty}", 2, "did the run reach its first step?"),
    "resume with another recipe": cli("train.py", f"--resume {{run}} --gin {SMOKE}", 2, "but this configuration builds",
                                      needs=("run",)),
    "resume with a damaged newest checkpoint": cli("train.py", "--resume {run} --gin-param train.epochs=3", 0,
                                                   "is damaged", changes=("run",), needs=("run", "damaged")),
    # evaluate.py
    "evaluate a missing model": ev("--ckpt {tmp}/nope.pt", 2, "does not exist"),
    "evaluate random bytes": ev("--ckpt {random_pt}", 2, "not a PyTorch file, or a damaged one"),
    "evaluate a bare state dict": ev("--ckpt {bare_pt}", 2, "not a checkpoint of this project"),
    "evaluate an ONNX file without our metadata": ev("--ckpt {plain_onnx}", 2, "person_seg"),
    "evaluate a split the run never wrote": ev("--ckpt {fake_run_ckpt} --split val", 2, "never wrote val.tsv"),
    "evaluate split lists whose data moved": ev("--ckpt {fake_run_ckpt}", 2, "that are not there"),
    "evaluate --json onto a folder": ev("--ckpt {ckpt} --data {folder} --json {tmp}", 2, "is a folder"),
    "evaluate --json read-only": ev("--ckpt {ckpt} --data {folder} --json {readonly}/m.json", 2, "m.json: " + READ_ONLY,
                                    needs=("readonly",)),
    "evaluate --batch-size 0": ev("--ckpt {ckpt} --data {folder} --batch-size 0", 2, "--batch-size=0"),
    "evaluate --workers -1": ev("--ckpt {ckpt} --data {folder} --workers -1", 2, "--workers=-1"),
    "evaluate --input-size not a size": ev("--ckpt {ckpt} --data {folder} --input-size big", 2,
                                           "--input-size 'big': expected HEIGHTxWIDTH"),
    "evaluate --input-size off the stride": ev("--ckpt {ckpt} --data {folder} --input-size 100x75", 2,
                                               "--input-size 100x75: both sides must be positive multiples of 32"),
    "evaluate --landscape-size portrait": ev("--ckpt {ckpt} --data {folder} --landscape-size 384x288", 2,
                                             "--landscape-size 384x288: expected a box wider than tall"),
    "evaluate a missing --data root": ev("--ckpt {ckpt} --data /nowhere", 2, "/nowhere does not exist"),
    "evaluate the model's own training photos": ev(
        "--ckpt {run}/weights/last.pt --data {run_aiseg} --data {run_folder} --workers 0", 0,
        "photos are in last.pt's training split", changes=("run/pics",), needs=("run",),
    ),
    "evaluate a 1x1 photo": ev("--ckpt {ckpt} --data {tiny_photo} --workers 0", 0, "1x1 pixels, smaller than"),
    "evaluate a mis-tagged EXIF photo": ev("--ckpt {ckpt} --data {mistagged} --workers 0", 0,
                                           "mask is 80x48 but its image is 48x80"),
    # export.py
    "export over an existing file": ex("--formats onnx --out {old_exports}", 2,
                                       "tiny.onnx: exists already and is not an export of tiny.pt (not a readable"),
    "export.py as the README says, on a run folder train.py made": cli(
        "export.py", "--ckpt {run}/weights/best.pt --formats torchscript,onnx,smp,half", 0,
        "best.onnx  exists and matches best.pt", changes=("run/weights/best_smp", "run/weights/best_fp16.pt"),
        needs=("run", "exported"),
    ),
    # devices are written into, never replaced (lib.live.files); the worst photos' picture needs a file
    "evaluate --json into a full device": ev(
        "--ckpt {ckpt} --data {folder} --workers 0 --json {nodes}/full", 2,
        "--json {nodes}/full: could not write into this character device: no space left on the disk (ENOSPC)",
        needs=("nodes",),
    ),
    "evaluate --json into a null device": ev(
        "--ckpt {ckpt} --data {folder} --workers 0 --json {nodes}/null", 0,
        "note: --json {nodes}/null is a character device: the worst photos' picture goes beside a file only",
        needs=("nodes",),
    ),
    # file names that are not UTF-8 (b'caf\xe9-0000.jpg'): OpenCV crashed the process on them
    "evaluate photos whose names are not UTF-8": ev(
        "--ckpt {ckpt} --data {latin1} --workers 0", 0, "latin1/images/caf\\xe9-broken.jpg: not a readable image",
    ),
    "train on photos whose names are not UTF-8": tr(
        "make_splits.roots = ['{latin1}']", "latin1/images/caf\\xe9-broken.jpg: not a readable image", 0,
        changes=("exps",),
    ),
    # a diverging run, a full disk, gin text that is not UTF-8
    "lr 3, which always diverges": tr("train.lr = 3", "train.lr=3: expected a number > 0 and <= 1"),
    "a diverging run": tr("train.lr = 1", "the training diverged and was stopped; {exps}/exp1/metrics.json holds",
                          changes=("exps",)),
    "disk full at the first checkpoint": tr(
        "train.run_root = '{bigfull}/exps'",
        "could not save checkpoint {bigfull}/exps/exp1/checkpoints/step_4: no space left on the disk (ENOSPC); no "
        "checkpoint was saved yet, so there is nothing to resume and the unfinished run folder {bigfull}/exps/exp1 "
        "was removed: make room on that disk or point train.run_root at another, then start the run again",
        changes=("bigfull/exps",), needs=("bigfull",), absent=("bigfull/exps/exp1",),
    ),
    "gin file with a latin-1 byte": cli("train.py", "--gin {latin1_gin}", 2,
                                        "latin1.gin, line 2, column 24 (byte offset 34): byte 0xe9 is not UTF-8"),
    "include of a gin file with a latin-1 byte": cli("train.py", "--gin {includes_latin1}", 2,
                                                     "latin1.gin, line 2, column 24 (byte offset 34): byte 0xe9"),
    # what the masks hold
    "evaluate 0/100 masks": ev("--ckpt {ckpt} --data {grey100} --workers 0", 0,
                               "masks in {grey100} hold 0 and 100, not 0/255: read as hard masks, 100 the person"),
    "evaluate soft masks that never reach half scale": ev("--ckpt {ckpt} --data {soft100} --workers 0", 0,
                                                          "masks in {soft100} hold values 0..100, not 0/255"),
    "evaluate a root whose every mask is empty": ev("--ckpt {ckpt} --data {blank} --workers 0", 0,
                                                    "warning: every mask in {blank} is empty"),
    "train on a root whose every mask is empty": tr("make_splits.roots = ['{aiseg}', '{blank}']",
                                                    "warning: every mask in {blank} is empty", 0, changes=("exps",)),
    "export to a read-only folder": ex("--formats onnx --out {readonly}/out", 2, READ_ONLY, needs=("readonly",)),
    "export onto a full disk": ex(
        "--formats onnx --out {full} --overwrite", 2,
        "could not write {full}/tiny.onnx: no space left on the disk (ENOSPC); nothing was changed there",
        needs=("full",),
    ),
    "export an unknown format": ex("--formats gif", 2, "--formats gif: unknown gif"),
    "export --opset 3": ex("--opset 3", 2, "--opset=3"),
    "export --calibration-photos 1": ex("--calibration-photos 1", 2, "--calibration-photos=1"),
    "export from an ONNX file": cli("export.py", "--ckpt {plain_onnx}", 2, "expected a .pt checkpoint"),
}  # fmt: skip


def fill(text: str, context: dict) -> str:
    """{name} -> the context's path (other braces, as in gin dicts, stay)."""
    return re.sub(r"\{(\w+)\}", lambda m: context.get(m[1], m[0]), text)


def snapshot(root: Path) -> dict:
    """Every file and folder under root: what a case must leave as it found it."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "folder"
    return found


def run_script(script: str, args: list[str], monkeypatch, capfd) -> tuple[int, str, str]:
    """`python <script> args` in this process: run_cli prints the line and exits with the status."""
    reset()
    monkeypatch.setattr(sys, "argv", [script, *args])
    code = 0
    try:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capfd.readouterr()
    return code, out, err


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]).returncode:
        pytest.skip("needs root and mount to make a read-only or a full file system")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A tiny run of two epochs (4 steps each), both checkpoints kept: what --resume and evaluate cases need."""
    tmp = tmp_path_factory.mktemp("run")
    roots = [make_aisegment(tmp / "aiseg", n=8), make_folder(tmp / "folder", n=8)]
    reset()
    roots = f"make_splits.roots = {[str(r) for r in roots]!r}"
    bindings = [*TINY, roots, f"train.run_root = '{tmp}'", "train.epochs = 2"]
    parse([SMOKE], bindings)
    run_dir = lib.training.train.train()
    reset()
    return run_dir


def write_exif_photo(root: Path, mask_upright: bool) -> Path:
    """A phone photo stored turned (80 wide, 48 high) whose EXIF says 'turn a quarter': upright it
    is 48x80. Its mask is the upright picture's (accepted) or the stored one's (mis-tagged)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image, mask = draw_pair(np.random.default_rng(0), 80, 48)  # upright: 80 high, 48 wide
    stored = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)  # EXIF 6 turns it back clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored[:, :, ::-1]).save(root / "images" / "phone.jpg", exif=exif.tobytes(), quality=95)
    saved = mask if mask_upright else cv2.rotate(mask, cv2.ROTATE_90_COUNTERCLOCKWISE)
    cv2.imwrite(str(root / "masks" / "phone.png"), saved * 255)
    return root


@pytest.fixture
def context(tmp_path, tiny_checkpoint, request) -> dict:
    """The paths the cases name, made in the test's folder (the readonly/full/run ones on demand)."""
    ctx = {"tmp": str(tmp_path), "exps": str(tmp_path / "exps"), "ckpt": str(tmp_path / "models" / "tiny.pt")}
    ctx["aiseg"], ctx["folder"] = (
        str(make_aisegment(tmp_path / "aiseg", n=8)),
        str(make_folder(tmp_path / "folder", n=8)),
    )
    (tmp_path / "models").mkdir()
    shutil.copy(tiny_checkpoint, ctx["ckpt"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "nothing" / "images").mkdir(parents=True)
    (tmp_path / "nothing" / "masks").mkdir()
    ctx |= {"empty": str(tmp_path / "empty"), "nothing": str(tmp_path / "nothing")}
    (tmp_path / "a_file").write_text("not a folder")
    ctx["a_file"] = str(tmp_path / "a_file")
    (tmp_path / "bad_include.gin").write_text("train.epochs = 1\ninclude 'nowhere.gin'\n")
    ctx["missing_include"] = str(tmp_path / "bad_include.gin")
    ctx["loop_a"], ctx["loop_b"] = str(tmp_path / "a.gin"), str(tmp_path / "b.gin")
    (tmp_path / "a.gin").write_text(f"include '{ctx['loop_b']}'\n")
    (tmp_path / "b.gin").write_text(f"include '{ctx['loop_a']}'\n")
    (tmp_path / "random.pt").write_bytes(os.urandom(512))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bare.pt")
    ctx |= {"random_pt": str(tmp_path / "random.pt"), "bare_pt": str(tmp_path / "bare.pt")}
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    identity = onnx.helper.make_node("Identity", ["x"], ["y"])  # a working model, but not one of ours
    plain = onnx.helper.make_model(onnx.helper.make_graph([identity], "g", [x], [y]))
    onnx.save(plain, tmp_path / "plain.onnx")
    ctx["plain_onnx"] = str(tmp_path / "plain.onnx")
    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["model"]["model_kwargs"] = {"decoder_channels": [32, 16, 8, 8, 8]}
    torch.save(payload, tmp_path / "other.pt")
    ctx["ckpt_other"] = str(tmp_path / "other.pt")
    # a run folder that wrote only a test list, of photos since moved
    (tmp_path / "fake_run" / "weights").mkdir(parents=True)
    (tmp_path / "fake_run" / "splits").mkdir()
    shutil.copy(tiny_checkpoint, tmp_path / "fake_run" / "weights" / "best.pt")
    (tmp_path / "fake_run" / "splits" / "test.tsv").write_text(f"{tmp_path}/moved\ta.jpg\ta.png\tfolder\n")
    ctx["fake_run_ckpt"] = str(tmp_path / "fake_run" / "weights" / "best.pt")
    tiny = tmp_path / "tiny_photo"
    make_folder(tiny, n=2)
    cv2.imwrite(str(tiny / "images" / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(tiny / "masks" / "dot.png"), np.zeros((1, 1), np.uint8))
    ctx["tiny_photo"] = str(tiny)
    ctx["mistagged"] = str(make_folder(write_exif_photo(tmp_path / "mistagged", mask_upright=False), n=2))
    (tmp_path / "old_exports").mkdir()
    (tmp_path / "old_exports" / "tiny.onnx").write_bytes(b"the user's own file")
    ctx["old_exports"] = str(tmp_path / "old_exports")
    for style in ("grey100", "soft100", "blank"):
        ctx[style] = str(restyle_masks(make_folder(tmp_path / style, n=8), style))
    latin1 = latin1_names(make_folder(tmp_path / "latin1", n=8))
    (latin1 / "images" / f"{LATIN1}-broken.jpg").write_bytes(b"not a photo")
    (latin1 / "masks" / f"{LATIN1}-broken.png").write_bytes((latin1 / "masks" / f"{LATIN1}-0000.png").read_bytes())
    ctx["latin1"] = str(latin1)
    (tmp_path / "latin1.gin").write_bytes(b"# a recipe\ntrain.epochs = 2  # caf\xe9 au lait\n")
    (tmp_path / "includes.gin").write_text(f"include '{tmp_path / 'latin1.gin'}'\n")
    ctx["latin1_gin"], ctx["includes_latin1"] = str(tmp_path / "latin1.gin"), str(tmp_path / "includes.gin")
    return ctx


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, context, tmp_path, monkeypatch, capfd, request):
    case, kinds = CASES[name], {}
    if "readonly" in case.needs:
        mount_tmpfs(tmp_path / "readonly", "ro,size=64k")
        request.addfinalizer(lambda: subprocess.run(["umount", str(tmp_path / "readonly")]))
        context["readonly"] = str(tmp_path / "readonly")
    if "full" in case.needs:
        mount_tmpfs(tmp_path / "full", "size=64k")
        request.addfinalizer(lambda: subprocess.run(["umount", str(tmp_path / "full")]))
        (tmp_path / "full" / "tiny.onnx").write_bytes(b"the user's earlier export")
        context["full"] = str(tmp_path / "full")
    if "run" in case.needs:
        shutil.copytree(request.getfixturevalue("run"), tmp_path / "run")
        context["run"] = str(tmp_path / "run")
        data = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
        context["run_aiseg"], context["run_folder"] = data["roots"]
    if "exported" in case.needs:  # what train.py's default train.export_formats leaves in weights/
        model, info = load_checkpoint(tmp_path / "run" / "weights" / "best.pt")
        export_all(model, info, tmp_path / "run" / "weights", "best", ("torchscript", "onnx"))
    if "nodes" in case.needs:
        (tmp_path / "nodes").mkdir()
        context["nodes"] = str(tmp_path / "nodes")
        kinds = {name: node_kind(device_node(tmp_path / "nodes", name, name)) for name in ("null", "full")}
    if "bigfull" in case.needs:  # room for the weights, not for the first checkpoint (about 160 MB with them)
        mount_tmpfs(tmp_path / "bigfull", "size=160m")
        # lazily: the failed save's file stays open in the traceback pytest keeps, which keeps the disk busy
        request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(tmp_path / "bigfull")]))
        context["bigfull"] = str(tmp_path / "bigfull")
    if "damaged" in case.needs:
        newest = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
        weights = newest / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])  # a truncated file
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    args = [fill(arg, context) for arg in case.args]
    code, out, err = run_script(case.script, args, monkeypatch, capfd)
    line = fill(case.line, context)
    assert code == case.code, (out, err)
    assert "Traceback" not in out + err
    said = [text for text in (out + err).splitlines() if line in text]
    assert len(said) == 1, (line, out, err)
    if case.code:
        errors = [text for text in err.splitlines() if text.startswith("error: ")]
        assert len(errors) == 1 and line in errors[0], err
    after = snapshot(tmp_path)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert {k for k in changed if not k.startswith(case.changes or ("\0",))} == set(), "changed: " + str(changed)
    assert [p for p in case.absent if (tmp_path / p).exists()] == []
    if "nodes" in case.needs:  # still the devices they were (type and device number), not files
        assert {name: node_kind(tmp_path / "nodes" / name) for name in kinds} == kinds


def test_an_exif_turned_phone_photo_whose_mask_is_upright_is_scored(tmp_path, tiny_checkpoint, capsys):
    """The header check, the decoder and the mask agree on the photo's orientation."""
    from lib.tools.evaluate import evaluate

    root = write_exif_photo(tmp_path / "phone", mask_upright=True)
    make_folder(root, n=2)
    result = evaluate(str(tiny_checkpoint), data=[str(root)], progress=False, num_workers=0)
    assert result["n"] == 3 and "left out" not in capsys.readouterr().out


def test_a_failed_checkpoint_save_leaves_the_last_good_one_to_resume(tmp_path, monkeypatch, capfd):
    """A full disk while saving step 8: one line, no half checkpoint, and --resume continues from
    step 4 to the same end as a run that never failed."""
    from accelerate import Accelerator

    data = [make_aisegment(tmp_path / "aiseg", n=8), make_folder(tmp_path / "folder", n=8)]
    roots = f"make_splits.roots = {[str(r) for r in data]!r}"
    bindings = (*TINY, roots, f"train.run_root = '{tmp_path / 'exps'}'", "train.epochs = 2")
    args = ["--gin", SMOKE, *[a for b in bindings for a in ("--gin-param", b)]]
    real_save = Accelerator.save_state

    def full_disk_at_step_8(self, output_dir, **kw):
        if "step_8" in str(output_dir):
            Path(output_dir).mkdir(parents=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, output_dir, **kw)

    monkeypatch.setattr(Accelerator, "save_state", full_disk_at_step_8)
    code, out, err = run_script("train.py", args, monkeypatch, capfd)
    run_dir = tmp_path / "exps" / "exp1"
    assert code == 2 and "Traceback" not in err
    assert f"error: could not save checkpoint {run_dir}/checkpoints/step_8: no space left on the disk (ENOSPC)" in err
    assert "the last good checkpoint step_4 is kept" in err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_4"]
    monkeypatch.setattr(Accelerator, "save_state", real_save)
    code, out, err = run_script("train.py", ["--resume", str(run_dir)], monkeypatch, capfd)
    assert code == 0, err
    reset()
    parse([SMOKE], list(bindings))
    straight = lib.training.train.train()

    assert outcome(run_dir) == outcome(straight)


@pytest.mark.slow  # three subprocesses
@pytest.mark.parametrize("name", ["lr -1", "evaluate --json onto a folder", "export an unknown format"])
def test_bad_input_in_a_real_process(name, context, tmp_path):
    case = CASES[name]
    args = [fill(arg, context) for arg in case.args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, str(ROOT / case.script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == case.code and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [line for line in proc.stderr.strip().splitlines() if case.line in line]
    assert not (tmp_path / "exps").exists()


@pytest.mark.slow  # a real process, its photos decoded in two loader workers
def test_photos_whose_names_are_not_utf8_are_scored_in_a_real_process(context, tmp_path):
    """OpenCV 5 crashed the process (SIGSEGV: exit -11, 139 in a shell) on such a name; now every
    photo is read through its bytes, and the names reach the json as they are on disk."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    scores = tmp_path / "scores.json"
    command = [sys.executable, str(ROOT / "evaluate.py"), "--ckpt", context["ckpt"], "--data", context["latin1"],
               "--workers", "2", "--json", str(scores)]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    result = json.loads(scores.read_text())
    assert result["n"] == 8 and all(Path(p["image"]).name.startswith(LATIN1) for p in result["per_image"])
    assert (tmp_path / "scores_worst.png").is_file()  # its captions name the photos too


# The address space a tiny run needs here: ~6 GB, most of it the CUDA build of torch's libraries,
# mapped but never touched. OMP_NUM_THREADS=1 and MALLOC_ARENA_MAX=1 keep threads and allocator
# arenas from adding gigabytes of it on a machine with many cores.
MEMORY_LIMIT = 7 * 2**30


@pytest.mark.slow  # two training processes under a real memory limit (about a minute each here)
def test_running_out_of_memory_says_what_to_lower_and_leaves_no_run_folder(context, tmp_path):
    import resource

    def limited(*bindings: str) -> subprocess.CompletedProcess:
        args = [fill(arg, context) for arg in TRAIN] + [a for b in bindings for a in ("--gin-param", b)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
               "MALLOC_ARENA_MAX": "1"}  # fmt: skip
        return subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=600, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT)),
        )  # fmt: skip

    control = limited("train.max_steps = 1")  # the limit leaves room for the tiny run itself
    if any(words in control.stderr for words in ("out of memory", "failed to map segment")):
        pytest.skip(f"a tiny run needs more than {MEMORY_LIMIT >> 30} GB of address space on this machine")
    assert control.returncode == 0, control.stderr[-2000:]
    shutil.rmtree(tmp_path / "exps")
    proc = limited("build_dataloaders.input_size = (3072, 2304)")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(errors) == 1, proc.stderr[-3000:]
    assert errors[0].startswith(
        "error: out of memory while training at input 3072x2304 with batch size 2 (validation 2): lower "
        "build_dataloaders.batch_size (and val_batch_size) or build_dataloaders.input_size"
    )
    assert f"the unfinished run folder {tmp_path / 'exps' / 'exp1'} was removed" in errors[0]
    assert list((tmp_path / "exps").iterdir()) == []
