"""A newcomer's first hour: quiet runs, no folder left by a failed launch, any working directory,
and every mistake answered in one line that names the file or flag."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, bindings, make_aisegment, make_folder, reset, train

from lib.live.errors import UserError
from lib.live.sinks import open_sink
from lib.live.sources import open_source
from lib.tools.evaluate import evaluate
from lib.training.config import parse
from lib.training.model import read_checkpoint


@pytest.fixture
def data(tmp_path):
    return [make_aisegment(tmp_path / "aiseg", n=8), make_folder(tmp_path / "folder", n=8)]


@pytest.mark.parametrize(
    "binding, message",
    [
        ("make_splits.roots = ['/nowhere']", r"/nowhere does not exist\. Point make_splits.roots at your data"),
        ("make_splits.split = (0.5, 0.0, 0.5)", "no validation pairs"),
        ("make_splits.split = (50, 2, 2)", "asks for 54 pairs"),
        ("build_model.encoder_name = 'resnet999'", "resnet999"),
        ("build_dataloaders.input_size = (100, 64)", "multiples of 32"),
        ("build_loss.weights = {'nope': 1.0}", "nope"),
    ],
)
def test_a_failed_launch_leaves_no_numbered_folder(tmp_path, data, binding, message):
    with pytest.raises(UserError, match=message):
        train(tmp_path, data, binding, "train.max_steps = 1")
    assert not (tmp_path / "exps").exists() or not list((tmp_path / "exps").glob("exp*"))


def test_after_failed_launches_the_next_good_run_is_exp1(tmp_path, data):
    for binding in ("make_splits.roots = ['/nowhere']", "build_model.encoder_name = 'resnet999'"):
        with pytest.raises(UserError):
            train(tmp_path, data, binding, "train.max_steps = 1")
        reset()
    assert train(tmp_path, data, "train.max_steps = 1").name == "exp1"


def test_a_recipes_missing_data_says_how_to_point_it_elsewhere(tmp_path):
    parse([str(ROOT / "gin" / "lite.gin")], [f"train.run_root = '{tmp_path}'"])
    with pytest.raises(UserError, match=r"does not exist .*relative to the working directory.*AISegment layout"):
        from lib.training.data import make_splits

        make_splits(roots=["no/such/folder"])


@pytest.mark.parametrize(
    "gin_text, params, message",
    [
        ("build_model.arch = Unet\n", [], r"bad.gin, line 1: `build_model.arch = Unet` strings need quotes"),
        ("", ["train.epochs=(5"], r"--gin-param 'train.epochs=\(5': a bracket is never closed"),
        ("", ["build_model.arch = Unet"], r"--gin-param 'build_model.arch = Unet': strings need quotes"),
        ("train.lr = 1e-3\ntrain.run_root = 'exp\n", [], r"bad.gin, line 2: .* a quote is never closed"),
    ],
)
def test_gin_slips_are_named_by_file_and_line(tmp_path, gin_text, params, message):
    files = []
    if gin_text:
        (tmp_path / "bad.gin").write_text(gin_text)
        files = [str(tmp_path / "bad.gin")]
    with pytest.raises(UserError, match=message) as error:
        parse(files, params)
    assert "\n" not in str(error.value) and "ast." not in str(error.value)


def test_random_bytes_checkpoint_is_one_plain_line(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(os.urandom(512))
    with pytest.raises(UserError) as error:
        read_checkpoint(path)
    text = str(error.value)
    assert "not a PyTorch file, or a damaged one" in text and "weights_only" not in text and "\n" not in text


def test_a_broken_mask_body_does_not_lose_the_run(tmp_path, data):
    """A PNG whose header is fine but whose body is not: skipped in training, and the run still
    writes its weights, pictures and metrics.json, saying which photo could not be scored."""
    reset()
    parse([], bindings(tmp_path, data, "train.max_steps = 2"))
    from lib.training.data import make_splits

    splits, _ = make_splits()
    victim = splits["val"][0].mask_path  # on the preview and in validation
    test_victim = splits["test"][0].mask_path
    reset()
    for path in (victim, test_victim):  # the pixel data zeroed; the chunks, header and IEND kept
        raw = bytearray(path.read_bytes())
        start = raw.index(b"IDAT") + 4
        raw[start : start + int.from_bytes(raw[start - 8 : start - 4], "big")] = bytes(
            int.from_bytes(raw[start - 8 : start - 4], "big")
        )
        path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="skipping"):
        run_dir = train(tmp_path, data, "train.max_steps = 2", "train.pics_every = 1")
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["steps"] == 2 and str(test_victim) in results["test_error"]
    assert (run_dir / "weights" / "best.pt").is_file() and (run_dir / "pics" / "val_epoch001.png").is_file()


def test_a_run_works_from_another_directory(tmp_path, data, monkeypatch):
    run_dir = train(tmp_path, data, "train.max_steps = 2", "train.export_formats = ('onnx',)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = evaluate(str(run_dir / "weights" / "best.onnx"), progress=False, num_workers=0)
    assert result["n"] == 4  # the run's test split, found from its split lists wherever we are
    assert all(Path(line.split("\t")[0]).is_absolute() for line in (run_dir / "splits" / "test.tsv").read_text()
               .splitlines()[1:])  # fmt: skip


def test_a_moved_model_keeps_its_pictures_to_itself(tmp_path, data, capsys):
    run_dir = train(tmp_path, data, "train.max_steps = 2", "train.export_formats = ('onnx',)")
    copy = tmp_path / "shipped" / "model.onnx"
    copy.parent.mkdir()
    copy.write_bytes((run_dir / "weights" / "best.onnx").read_bytes())
    before = sorted((run_dir / "pics").iterdir())
    evaluate(str(copy), progress=False, num_workers=0)
    assert sorted((run_dir / "pics").iterdir()) == before  # nothing written into the original run
    assert (copy.parent / "model_eval_test_worst.png").is_file()
    assert "worst photos: " + str(copy.parent / "model_eval_test_worst.png") in capsys.readouterr().out


def test_split_lists_written_elsewhere_name_the_real_cause(tmp_path):
    from lib.training.splits import read_split

    (tmp_path / "test.tsv").write_text("# root\timage\tmask\tlayout\nrelative/root\ta.jpg\ta.png\tfolder\n")
    with pytest.raises(UserError, match="relative to the directory train.py ran in"):
        read_split(tmp_path / "test.tsv")


def test_camera_minus_one_and_output_folders_like_files(tmp_path):
    import numpy as np

    with pytest.raises(UserError, match=r"--source -1: no camera found \(tried indices 0 to 9\)"):
        open_source("-1")  # "any camera", not a file called -1
    with pytest.raises(UserError, match="camera indices start at 0"):
        open_source("-3")
    with pytest.raises(UserError, match=r"folder .*missing does not exist"):
        open_sink(tmp_path / "missing" / "frames", 30.0, single_image_source=False)
    with pytest.raises(UserError, match=r"folder .*missing does not exist"):
        open_sink(tmp_path / "missing" / "video.mp4", 30.0, single_image_source=False)
    sink = open_sink(tmp_path / "frames", 30.0, single_image_source=False)
    sink.write(np.zeros((4, 4, 3), np.uint8), "000001")
    sink.close()  # the folder appears complete, when the run ends
    assert (tmp_path / "frames" / "000001.png").is_file()


@pytest.mark.slow
def test_a_cli_run_prints_its_own_lines_and_little_else(tmp_path, data):
    """No Accelerate notice, no WandB chatter (offline, silent), nothing but the run's lines and a progress bar."""
    params = bindings(tmp_path, data, "train.max_steps = 4", "train.log_with = ('tensorboard', 'wandb')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "train.py", "--gin", "gin/smoke.gin", *[a for p in params for a in ("--gin-param", p)]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the run's lines go to stdout; stderr holds only the progress bar's frames, told by their
    # shape, whatever the speed (a slow machine shows s/step, a fast one step/s)
    ours = [line for line in proc.stdout.splitlines() if line.strip()]
    assert all(line.startswith(("run ", "epoch ", "test (", "exported ", "done: ")) for line in ours), ours
    frames = [frame for frame in re.split(r"[\r\n]", proc.stderr) if frame.strip()]
    assert all(re.match(r"\s*\d+%\|.*\| \d+/\d+ \[", frame) for frame in frames), frames
    assert (tmp_path / "exps" / "exp1" / "logs" / "wandb").is_dir()  # WandB still wrote its run, offline
