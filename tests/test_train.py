"""The training loop end to end on generated data: run folders, resume, failure modes, gin files."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gin
import pytest
import torch
from helpers import ROOT, bindings, make_aisegment, make_folder, outcome, reset, train

import lib
from lib.live.errors import UserError
from lib.training import run_folder
from lib.training.config import parse, parse_for_resume
from lib.training.model import read_checkpoint


def writer_pids(run_dir: Path) -> set[str]:
    """TensorBoard event files are named events.out.tfevents.<time>.<host>.<pid>.<n>."""
    return {p.name.split(".")[-2] for p in (run_dir / "logs").rglob("events.out.tfevents*")}


@pytest.fixture
def data(tmp_path):
    return [make_aisegment(tmp_path / "aiseg", n=8), make_folder(tmp_path / "folder", n=8)]


def test_run_folder_holds_everything(tmp_path, data):
    run_dir = train(
        tmp_path,
        data,
        "train.epochs = 2",
        "train.pics_every = 1",
        "train.log_with = ('tensorboard', 'wandb')",
        "train.export_formats = ('torchscript', 'onnx')",
    )
    assert run_dir == tmp_path / "exps" / "exp1"
    expected = [
        "operative_config.gin",
        "metrics.json",
        "splits/train.tsv",
        "splits/val.tsv",
        "splits/test.tsv",
        "weights/best.pt",
        "weights/last.pt",
        "weights/best.ts",
        "weights/best.onnx",
        "pics/curves.png",
        "pics/val_epoch001.png",
        "pics/val_epoch002.png",
        "pics/test_worst.png",
    ]
    for name in expected:
        assert (run_dir / name).is_file(), name
    assert "build_model.arch = 'Unet'" in (run_dir / "operative_config.gin").read_text()
    assert len(writer_pids(run_dir)) == 1
    assert len(list((run_dir / "logs" / "wandb").glob("offline-run-*"))) == 1
    assert [s for s, _ in run_folder.checkpoints(run_dir)] == [4, 8]  # 4 steps per epoch, both kept
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["steps"] == 8 and len(results["history"]) == 2
    assert 0.0 <= results["test"]["iou"] <= 1.0 and results["test"]["n"] == 4
    assert set(results["test"]["by_root"]) == {str(d) for d in data}
    assert results["exports"]["onnx"]["max_abs_diff"] < 1e-4
    info, _ = read_checkpoint(run_dir / "weights" / "best.pt")  # self-describing
    assert info.spec.arch == "Unet" and info.prep.input_size == (64, 64)
    assert info.meta["epoch"] == results["best"]["epoch"]


@pytest.mark.slow  # several training runs
def test_runs_are_numbered(tmp_path, data):
    first = train(tmp_path, data, "train.max_steps = 1")
    reset()
    second = train(tmp_path, data, "train.max_steps = 1")
    assert (first.name, second.name) == ("exp1", "exp2")
    (tmp_path / "exps" / "exp7").mkdir()  # numbering continues after the highest, gaps and all
    assert run_folder.new_run_dir(tmp_path / "exps").name == "exp8"


@pytest.mark.slow  # several training runs
def test_validation_iou_rises_on_learnable_data(tmp_path):
    roots = [make_folder(tmp_path / "easy", n=16)]
    run_dir = train(
        tmp_path,
        roots,
        "train.epochs = 6",
        "train.lr = 3e-3",
        "build_dataloaders.batch_size = 4",
        "build_dataloaders.augment_strength = 0.2",
    )
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert history[-1]["val_iou"] > history[0]["val_iou"] + 0.1
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.slow  # several training runs
def test_a_resumed_runs_config_starts_a_new_run_when_reused(tmp_path, data, monkeypatch):
    """--resume reaches train() as an argument: the operative config records no `train.resume`."""
    first = train(tmp_path, data, "train.epochs = 2", "train.max_steps = 4")
    reset()
    parse_for_resume(str(first), [], ["train.epochs = 3", "train.max_steps = 6"])
    assert lib.training.train.train(resume=str(first)) == first
    config = (first / "operative_config.gin").read_text()
    assert "train.resume" not in config and "train.epochs = 3" in config
    reset()
    parse([str(first / "operative_config.gin")], [])
    second = lib.training.train.train()
    assert second != first and second.parent == first.parent
    assert json.loads((second / "metrics.json").read_text())["history"][0]["epoch"] == 1
    reset()
    with pytest.raises(UserError, match="train.resume"):  # not a gin parameter: a binding is refused, not ignored
        parse([], ["train.resume = 'experiments/exp1'"])


def test_a_stop_request_asks_once_and_puts_the_handlers_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with lib.training.train.StopRequest() as stop:
        assert signal.getsignal(signal.SIGINT) == stop._handle
        os.kill(os.getpid(), signal.SIGTERM)  # the first signal asks; the step finishes
        time.sleep(0.01)
        assert stop.requested
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_loader_arguments_the_loop_passes_cannot_be_bound():
    for binding in ("build_dataloaders.seed = 3", "build_dataloaders.splits = {}"):
        with pytest.raises(UserError, match="build_dataloaders"):
            parse([], [binding])


class StopAfter:
    """Stands in for Ctrl-C: asks the loop to stop once it has read the flag n times."""

    def __init__(self, n):
        self.n = n

    def __call__(self):
        outer = self

        class Stop:
            @property
            def requested(self):
                outer.n -= 1
                return outer.n < 0

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

        return Stop()


@pytest.mark.slow  # several training runs
def test_interrupt_then_resume_equals_an_uninterrupted_run(tmp_path, data, monkeypatch):
    steps = ["train.epochs = 3"]
    straight = train(tmp_path, data, *steps)
    reset()
    monkeypatch.setattr(lib.training.train, "StopRequest", StopAfter(5))  # stop after step 6, mid-epoch 2
    with pytest.raises(lib.training.train.Interrupted, match=r"stopped at step 6 .* --resume"):
        train(tmp_path, data, *steps)
    interrupted = tmp_path / "exps" / "exp2"
    assert [s for s, _ in run_folder.checkpoints(interrupted)] == [4, 6]
    monkeypatch.undo()
    reset()
    parse_for_resume(str(interrupted), [], [])
    assert lib.training.train.train(resume=str(interrupted)) == interrupted
    a = read_checkpoint(straight / "weights" / "last.pt")[1]
    b = read_checkpoint(interrupted / "weights" / "last.pt")[1]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    history_a = json.loads((straight / "metrics.json").read_text())["history"]
    history_b = json.loads((interrupted / "metrics.json").read_text())["history"]
    assert [h["val_iou"] for h in history_a] == pytest.approx([h["val_iou"] for h in history_b], abs=1e-6)


def stopped_and_resumed(tmp_path, data, monkeypatch, stop_at: int, *steps: str) -> Path:
    """A run stopped (as by Ctrl-C or SIGTERM) after optimizer step `stop_at`, then resumed to its end."""
    reset()
    monkeypatch.setattr(lib.training.train, "StopRequest", StopAfter(stop_at - 1))
    with pytest.raises(lib.training.train.Interrupted, match=rf"stopped at step {stop_at} "):
        train(tmp_path, data, *steps)
    run_dir = sorted((tmp_path / "exps").iterdir(), key=lambda p: int(p.name[3:]))[-1]
    monkeypatch.undo()
    reset()
    parse_for_resume(str(run_dir), [], [])
    assert lib.training.train.train(resume=str(run_dir)) == run_dir
    return run_dir


EXACT = ("train.epochs = 2",)  # 4 steps an epoch


def test_stopped_on_the_last_step_of_an_epoch_resumes_exactly(tmp_path, data, monkeypatch):
    """Stopped after an epoch's last step, before its validation: the resumed run validates that
    epoch (it can still become best.pt) and ends exactly as a run never stopped."""
    straight = train(tmp_path, data, *EXACT)
    resumed = stopped_and_resumed(tmp_path, data, monkeypatch, 4, *EXACT)
    assert outcome(resumed) == outcome(straight)
    assert [h["epoch"] for h in outcome(resumed)["history"]] == [1, 2]


@pytest.mark.slow  # 15 training runs
def test_resume_is_exact_at_every_step_boundary(tmp_path, data, monkeypatch):
    straight = outcome(train(tmp_path, data, *EXACT))
    for stop_at in range(1, 8):
        assert outcome(stopped_and_resumed(tmp_path, data, monkeypatch, stop_at, *EXACT)) == straight, stop_at


def test_a_resumed_run_counts_the_time_before_the_resume_against_its_budget(tmp_path, data, monkeypatch):
    """A budget that restarted at each resume would grow the schedule back and raise the learning rate."""
    monkeypatch.setattr(lib.training.train, "StopRequest", StopAfter(5))  # stop after step 6, mid-epoch 2 of 5
    with pytest.raises(lib.training.train.Interrupted):
        train(tmp_path, data, "train.epochs = 5", "train.max_minutes = 10")
    run_dir = tmp_path / "exps" / "exp1"
    loop_file = run_dir / "checkpoints" / "step_6" / "loop.json"
    loop = json.loads(loop_file.read_text())
    assert 0 < loop["seconds"] < 600
    loop_file.write_text(json.dumps(loop | {"seconds": 600 - 1e-3}))  # as if 10 minutes were spent before
    monkeypatch.undo()
    reset()
    parse_for_resume(str(run_dir), [], [])
    lib.training.train.train(resume=str(run_dir))
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["steps"] == 8 and len(results["history"]) == 2  # ends with the epoch it was in, not epoch 5
    assert results["training_minutes"] >= 10.0


@pytest.mark.slow  # several training runs
def test_bf16_and_gradient_accumulation(tmp_path, data, capsys):
    run_dir = train(tmp_path, data, "train.epochs = 2", "train.grad_accum = 2", "train.mixed_precision = 'bf16'")
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["steps"] == 4  # 4 batches an epoch, 2 per optimizer step
    assert [h["step"] for h in results["history"]] == [2, 4]
    assert "on cpu x1 (bf16)" in capsys.readouterr().out
    assert "train.mixed_precision = 'bf16'" in (run_dir / "operative_config.gin").read_text()


def test_time_budget_shortens_the_schedule(tmp_path, data):
    run_dir = train(tmp_path, data, "train.epochs = 5", "train.max_minutes = 0.0001")
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["steps"] == 4 and len(results["history"]) == 1  # one epoch timed, nothing more fits
    assert lib.training.train.fit_to_budget(20, 1, 4, epoch_s=10.0, left_s=25.0) == 12  # two more epochs fit
    assert lib.training.train.fit_to_budget(20, 1, 4, epoch_s=1.0, left_s=100.0) == 20  # never beyond the plan


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, data, monkeypatch):
    real = lib.training.train.build_loss

    def poisoned_after(n):
        loss = real()
        calls = {"n": 0}

        def forward(logits, target):
            calls["n"] += 1
            value = loss(logits, target)
            return value * float("nan") if calls["n"] > n else value

        return forward

    monkeypatch.setattr(lib.training.train, "build_loss", lambda: poisoned_after(4 + 4))  # 4 train + 4 val calls
    with pytest.raises(
        lib.training.train.Diverged, match=r"training loss became nan at step 5 .*kept \(the last: step_4\)"
    ):
        train(tmp_path, data, "train.epochs = 3")
    run_dir = tmp_path / "exps" / "exp1"
    assert [s for s, _ in run_folder.checkpoints(run_dir)] == [4]
    weights = read_checkpoint(run_dir / "weights" / "last.pt")[1]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_diverging_run_stops_keeps_its_checkpoints_and_writes_what_it_measured(tmp_path, data, monkeypatch):
    """A real divergence, no poisoned loss: a run stopped in epoch 2 (checkpoints 4 and 6) goes on
    at train.lr=1, the largest the range check allows, and explodes (validation loss 1e12 here)."""
    monkeypatch.setattr(lib.training.train, "StopRequest", StopAfter(5))
    with pytest.raises(lib.training.train.Interrupted):
        train(tmp_path, data, "train.epochs = 3")
    run_dir = tmp_path / "exps" / "exp1"
    monkeypatch.undo()
    reset()
    parse_for_resume(str(run_dir), [], ["train.lr = 1"])
    with pytest.raises(lib.training.train.Diverged) as stop:
        lib.training.train.train(resume=str(run_dir))
    said = str(stop.value).split("\n")[0]
    assert re.match(r"the (training|validation) loss became \S+ at step \d+ \(epoch [23]\): the training diverg", said)
    assert "its checkpoints are kept (the last: step_6)" in said and "lower train.lr (this run's: 1)" in said
    assert [s for s, _ in run_folder.checkpoints(run_dir)] == [4, 6]  # nothing diverged replaced them
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["stopped"] == said and results["best"]["epoch"] == 1
    assert results["history"][0]["epoch"] == 1 and results["history"][0]["val_loss"] < 10
    weights = read_checkpoint(run_dir / "weights" / "best.pt")[1]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_an_lr_that_always_diverges_is_refused_before_anything_is_built(tmp_path, data):
    with pytest.raises(UserError, match=r"train.lr=3: expected a number > 0 and <= 1"):
        train(tmp_path, data, "train.lr = 3")
    assert not (tmp_path / "exps").exists()


@pytest.mark.parametrize(
    "binding, message",
    [
        ("train.no_such_flag = 1", "gin config: .*no_such_flag"),
        ("no_such_function.x = 1", "gin config: No configurable matching 'no_such_function'"),
        ("build_model.encoder_name = 'resnet1000'", "encoder_name='resnet1000' is not an encoder smp knows"),
        ("build_model.arch = 'Unet3D'", "arch='Unet3D' is not an smp architecture"),
        ("build_model.encoder_weights = '/nowhere/enc.pt'", "encoder_weights='/nowhere/enc.pt': no such file"),
        ("build_dataloaders.input_size = (100, 64)", r"input_size=\(100, 64\): height and width must be .*32"),
        ("make_splits.roots = ['/nowhere']", "data root /nowhere does not exist"),
    ],
)
def test_bad_configuration_gives_one_clear_message(tmp_path, data, binding, message):
    with pytest.raises(UserError, match=message):
        train(tmp_path, data, binding, "train.max_steps = 1")


def test_encoder_weights_from_a_local_file(tmp_path, data):
    from lib.training.model import build_model

    model, _ = build_model(arch="Unet", encoder_name="resnet18")
    path = tmp_path / "enc.pt"
    torch.save({k: v + 1 for k, v in model.encoder.state_dict().items()}, path)
    loaded, _ = build_model(arch="Unet", encoder_name="resnet18", encoder_weights=str(path))
    assert torch.equal(loaded.encoder.conv1.weight, model.encoder.conv1.weight + 1)
    with pytest.raises(UserError, match="does not fit encoder"):
        build_model(arch="Unet", encoder_name="mobilenet_v2", encoder_weights=str(path))


def test_imagenet_offline_says_what_to_do(monkeypatch):
    from lib.training.model import build_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="could not download the resnet18 weights"):
        build_model(arch="Unet", encoder_name="resnet18", encoder_weights="imagenet")


def _tiny_checkpoint(path: Path, half: bool = False, **spec_changes) -> tuple[torch.nn.Module, dict]:
    from lib.live.model_info import ModelInfo, ModelSpec
    from lib.live.preprocess import Preprocess
    from lib.training.model import create, save_checkpoint

    spec = {"arch": "Unet", "encoder_name": "resnet18", "model_kwargs": {"decoder_channels": (16, 16, 8, 8, 8)}}
    spec |= spec_changes
    torch.manual_seed(3)
    model = create(spec["arch"], spec["encoder_name"], spec["model_kwargs"])
    for p in model.parameters():  # weights no fresh network has
        p.data.add_(0.5)
    save_checkpoint(path, model, ModelInfo(ModelSpec(**spec), Preprocess(input_size=(64, 64))), half=half)
    return model, spec


def test_init_from_loads_every_weight_exactly(tmp_path):
    from lib.training.model import build_model

    saved, spec = _tiny_checkpoint(tmp_path / "a.pt")
    # encoder_weights names no file: with init_from it is not read
    model, _ = build_model(
        spec["arch"], spec["encoder_name"], "no-such-file.pt", spec["model_kwargs"], init_from=str(tmp_path / "a.pt")
    )
    theirs = saved.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())
    # a half-precision checkpoint (models/lite.pt) loads as fp32, each weight rounded to fp16
    _tiny_checkpoint(tmp_path / "half.pt", half=True)
    model, _ = build_model(
        spec["arch"], spec["encoder_name"], None, spec["model_kwargs"], init_from=str(tmp_path / "half.pt")
    )
    weight = model.encoder.conv1.weight
    assert weight.dtype == torch.float32 and torch.equal(weight, saved.encoder.conv1.weight.half().float())


@pytest.mark.parametrize(
    "build, message",
    [
        ({"arch": "UnetPlusPlus"}, r"init_from=.* is a Unet/resnet18 .* this run builds UnetPlusPlus/resnet18"),
        ({"encoder_name": "resnet34"}, r"is a Unet/resnet18 .*this run builds Unet/resnet34"),
        ({"model_kwargs": {"decoder_channels": (32, 16, 8, 8, 8)}}, r"decoder_channels.*set build_model.arch"),
        ({"model_kwargs": {"decoder_channels": (16, 16, 8, 8, 8), "in_channels": 4}}, r"in_channels"),
    ],
)
def test_init_from_refuses_another_architecture_in_one_line(tmp_path, build, message):
    from lib.training.model import build_model

    _, spec = _tiny_checkpoint(tmp_path / "a.pt")
    with pytest.raises(UserError, match=message) as error:
        build_model(**(spec | build), init_from=str(tmp_path / "a.pt"))
    assert "\n" not in str(error.value).split("\n  In call to configurable")[0]  # what the CLI prints


def test_init_from_refuses_missing_foreign_and_differently_normalised_files(tmp_path):
    from lib.training.model import build_model

    spec = {"arch": "Unet", "encoder_name": "resnet18", "model_kwargs": {"decoder_channels": (16, 16, 8, 8, 8)}}
    with pytest.raises(UserError, match=r"init_from='.*nothing.pt': no such file"):
        build_model(**spec, init_from=str(tmp_path / "nothing.pt"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bare.pt")
    with pytest.raises(UserError, match=r"init_from=.*bare.pt.*not a checkpoint of this project"):
        build_model(**spec, init_from=str(tmp_path / "bare.pt"))
    _tiny_checkpoint(tmp_path / "a.pt")
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    payload["preprocess"]["mean"] = [0.5, 0.5, 0.5]
    torch.save(payload, tmp_path / "other_norm.pt")
    with pytest.raises(UserError, match="normalised with mean"):
        build_model(**spec, init_from=str(tmp_path / "other_norm.pt"))


def test_training_continues_from_a_whole_model(tmp_path, data):
    """A run started with init_from begins where the checkpoint's weights are, not from scratch."""
    first = train(tmp_path, data, "train.max_steps = 4")
    reset()
    second = train(
        tmp_path,
        data,
        "train.max_steps = 1",
        "train.lr = 1e-12",
        "train.warmup_steps = 1",
        f"build_model.init_from = '{first / 'weights' / 'last.pt'}'",
    )
    before = read_checkpoint(first / "weights" / "last.pt")[1]
    after = read_checkpoint(second / "weights" / "last.pt")[1]
    weights = [k for k, v in before.items() if v.is_floating_point() and "running" not in k]
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in weights)


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "gin").glob("*.gin")))
def test_every_gin_file_trains_two_steps(tmp_path, data, config):
    tiny = [
        "build_model.encoder_weights = None",
        "build_dataloaders.input_size = (64, 64)",
        "build_dataloaders.batch_size = 2",
        "build_dataloaders.num_workers = 0",
        "make_splits.split = (0.5, 0.25, 0.25)",
        "train.max_steps = 2",
        "train.export_formats = ('onnx',)",
        "build_dataloaders.early_size = (32, 32)",
        f"build_dataloaders.cache_dir = '{tmp_path / 'cache'}'",
        "build_model.init_from = None",  # scenes_cpu.gin continues models/lite.pt; these nets are tiny
        "plate_split.folders = ()",  # a clone has no ../shared; the scenes' own test covers plates
        "train.eval_roots = ()",
    ]
    run_dir = train(tmp_path, data, *tiny, gin_files=[str(ROOT / "gin" / config)])
    assert (run_dir / "weights" / "best.onnx").is_file() and (run_dir / "operative_config.gin").is_file()
    arch = gin.query_parameter("build_model.arch")
    assert f"build_model.arch = '{arch}'" in (run_dir / "operative_config.gin").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 2


def _cli(args, cwd=ROOT, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    return subprocess.Popen(args, cwd=cwd, env=env, **pipe, **kwargs)


def _wait_for(path: Path, proc, timeout=120):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_cli_killed_or_interrupted_run_resumes(tmp_path, data, sig):
    params = [a for b in bindings(tmp_path, data, "train.epochs = 40") for a in ("--gin-param", b)]
    proc = _cli([sys.executable, "train.py", "--gin", "gin/smoke.gin", *params])
    run_dir = tmp_path / "exps" / "exp1"
    _wait_for(run_dir / "checkpoints" / "step_4", proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "stopped at step" in out and "--resume" in out and "Traceback" not in out
    else:
        assert proc.returncode == -signal.SIGKILL
    saved = run_folder.checkpoints(run_dir)[-1][0]
    assert saved >= 4 and (run_dir / "weights" / "last.pt").is_file()
    resumed = _cli([sys.executable, "train.py", "--resume", str(run_dir), "--gin-param", "train.epochs = 12"])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert f"resuming {run_dir} at step {saved}" in out
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 48
    assert not list((tmp_path / "exps").glob("exp2"))


@pytest.mark.slow
def test_cli_bad_flag_message_without_traceback(tmp_path):
    proc = _cli([sys.executable, "train.py", "--gin", "gin/smoke.gin", "--gin-param", "train.lrr = 1"])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "error: gin config:" in out and "lrr" in out and "Traceback" not in out
    proc = _cli([sys.executable, "train.py", "--gin", "gin/nope.gin"])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--gin gin/nope.gin: no such file" in out


@pytest.mark.slow
def test_two_processes_one_folder_same_validation(tmp_path):
    """Two processes on the CPU (gloo): one run folder, written by the main process, and
    validation scores equal to one process scoring the same weights (the val split is odd-sized,
    so the gather must drop the padding duplicates)."""
    roots = [make_folder(tmp_path / "folder", n=10)]  # val: 3 photos over 2 processes
    params = bindings(
        tmp_path, roots, "train.epochs = 1", "make_splits.split = (0.5, 0.3, 0.2)", "train.log_with = ('tensorboard',)"
    )
    # accelerate 1.15's "--cpu --num_processes 2" starts one process unless MPI is installed;
    # --multi_gpu goes through torchrun, and train() picks the CPU when there is no CUDA.
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    proc = _cli([*launcher, "train.py", "--gin", "gin/smoke.gin", *[a for p in params for a in ("--gin-param", p)]])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert sorted(p.name for p in (tmp_path / "exps").iterdir()) == ["exp1"]
    run_dir = tmp_path / "exps" / "exp1"
    assert "x2" in out  # the run reported two processes
    assert len(writer_pids(run_dir)) == 1
    assert sorted(p.name for p in run_folder.checkpoints(run_dir)[-1][1].glob("random_states_*")) == [
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]
    val_two = json.loads((run_dir / "metrics.json").read_text())["history"][-1]

    from accelerate import Accelerator

    from lib.training.data import build_dataloaders
    from lib.training.losses import build_loss
    from lib.training.model import load_checkpoint
    from lib.training.run_folder import load_splits

    model, _ = load_checkpoint(run_dir / "weights" / "last.pt")
    accelerator = Accelerator(cpu=True)
    _, val_dl, _ = build_dataloaders(load_splits(run_dir), input_size=(64, 64), batch_size=2, num_workers=0)
    model, val_dl = accelerator.prepare(model, val_dl)
    val_one = lib.training.train.validate(model, val_dl, build_loss(), accelerator)
    assert val_one["n"] == 3
    assert val_one["iou"] == pytest.approx(val_two["val_iou"], abs=1e-9)
    assert val_one["mean_iou"] == pytest.approx(val_two["val_mean_iou"], abs=1e-9)
    assert val_one["loss"] == pytest.approx(val_two["val_loss"], rel=1e-5)
