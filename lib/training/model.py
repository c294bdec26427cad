"""The segmentation model: any smp architecture and encoder, and self-describing checkpoints.

A checkpoint (.pt) holds the weights, how to rebuild the network, and how to prepare its
input, so evaluate.py, export.py and webcam.py need nothing but the file.
"""

from pathlib import Path

import gin
import segmentation_models_pytorch as smp
import torch
from torch import nn

from lib.live.errors import UserError
from lib.live.files import write_atomic
from lib.live.model_info import ModelInfo, ModelSpec
from lib.live.preprocess import IMAGENET_MEAN, IMAGENET_STD


def create(arch: str, encoder_name: str, model_kwargs: dict | None = None, encoder_weights=None) -> nn.Module:
    """smp.create_model with one output channel (person logit) and messages that name the flag."""
    if arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        known = sorted(cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values())
        raise UserError(f"build_model.arch={arch!r} is not an smp architecture; known: {', '.join(known)}")
    if not encoder_name.startswith("tu-") and encoder_name not in smp.encoders.get_encoder_names():
        raise UserError(
            f"build_model.encoder_name={encoder_name!r} is not an encoder smp knows; e.g. resnet18, "
            "mobilenet_v2, efficientnet-b0, or any timm model as 'tu-<name>' "
            "(see smp.encoders.get_encoder_names())"
        )
    try:
        return smp.create_model(
            arch, encoder_name=encoder_name, encoder_weights=encoder_weights, classes=1, **(model_kwargs or {})
        )
    except RuntimeError as error:  # timm: "Unknown model (...)"
        if "Unknown model" in str(error):
            raise UserError(f"build_model.encoder_name={encoder_name!r}: timm has no such model") from None
        raise
    except (TypeError, ValueError) as error:
        raise UserError(f"build_model.model_kwargs={model_kwargs!r} rejected by smp {arch}: {error}") from None


@gin.configurable
def build_model(
    arch: str = "UnetPlusPlus",
    encoder_name: str = "resnet18",
    encoder_weights: str | None = None,
    model_kwargs: dict | None = None,
    init_from: str | None = None,
) -> tuple[nn.Module, ModelSpec]:
    """Returns the model and its spec (what `create` needs to rebuild it without weights).

    encoder_weights: None (random init), "imagenet" (downloaded from the hub by smp: needs a
    network), or a path to a state dict for `model.encoder` (offline ImageNet weights).
    init_from: a checkpoint of this project (e.g. models/lite.pt) whose every weight is loaded,
    to fine-tune a trained model on other data or to continue training when its run folder is
    gone; it must be of the same architecture, and encoder_weights is then not used.
    """
    spec = ModelSpec(arch, encoder_name, dict(model_kwargs or {}))
    if init_from is not None:
        model = create(arch, encoder_name, model_kwargs, None)
        load_whole_model(model, spec, Path(init_from))
        return model, spec
    if encoder_weights is None or encoder_weights == "imagenet":
        try:
            model = create(arch, encoder_name, model_kwargs, encoder_weights)
        except OSError as error:  # huggingface_hub cannot reach the hub
            raise UserError(
                f"build_model.encoder_weights='imagenet': could not download the {encoder_name} weights "
                f"({type(error).__name__}; no network?). Offline, pass a local state dict of the {encoder_name} "
                f"encoder (build_model.encoder_weights='path/to/{encoder_name}_imagenet_encoder.pt') or None "
                "to start from random weights"
            ) from None
        return model, spec
    model = create(arch, encoder_name, model_kwargs, None)
    load_encoder_weights(model, Path(encoder_weights))
    return model, spec


def load_encoder_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(
            f"build_model.encoder_weights={str(path)!r}: no such file (expected None, 'imagenet' or a .pt path)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise UserError(f"build_model.encoder_weights={str(path)!r}: not a torch state dict ({error})") from None
    try:
        model.encoder.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[:3]
        raise UserError(
            f"build_model.encoder_weights={str(path)!r} does not fit encoder "
            f"{type(model.encoder).__name__}: {' '.join(first)}"
        ) from None


def load_whole_model(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    """Every weight of checkpoint `path` into `model`, or one line saying why it does not fit."""
    flag = f"build_model.init_from={str(path)!r}"
    if not path.is_file():
        raise UserError(f"{flag}: no such file (expected a .pt checkpoint of this project, e.g. models/lite.pt)")
    try:
        info, state = read_checkpoint(path)
    except UserError as error:
        raise UserError(f"{flag}: {error}") from None
    if not info.spec.same_network(spec):
        raise UserError(
            f"{flag} is a {info.spec} model; this run builds {spec}: set build_model.arch, encoder_name and "
            "model_kwargs to the checkpoint's"
        )
    if info.prep.mean != IMAGENET_MEAN or info.prep.std != IMAGENET_STD:
        raise UserError(
            f"{flag}: its input is normalised with mean {info.prep.mean} and std {info.prep.std}; this "
            "project's training feeds ImageNet-normalised input, so its weights would see other numbers"
        )
    try:
        model.load_state_dict(state)  # strict: every weight, every shape
    except RuntimeError as error:
        first = " ".join(str(error).splitlines()[:2])[:300]
        raise UserError(f"{flag}: weights do not fit {spec}: {first}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(path: Path, model: nn.Module, info: ModelInfo, half: bool = False) -> None:
    """Write atomically: a run killed mid-write, or a full disk, leaves the previous file intact.

    half: store floating-point weights as fp16 (half the file); loading casts them back to fp32.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: torch.save({**info.to_dict(), "state_dict": state}, tmp))


def average_checkpoints(paths: list[str | Path], weights: list[float] | None = None) -> tuple[nn.Module, ModelInfo]:
    """One network whose every weight is the weighted mean of the checkpoints' (a "model soup").

    Checkpoints fine-tuned from one start lie in one basin, so their mean is a network too, often
    better on data none of them was tuned for than each of them (Wortsman et al. 2022, "Model
    soups"); the mean of a fine-tune and its start keeps much of what the fine-tune learned and
    much of what it forgot (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models",
    WiSE-FT). Batch-norm statistics are averaged like the weights. The description (input size,
    run folder) is the last checkpoint's. Costs nothing at inference: the same network.
    """
    if len(paths) < 2:
        raise UserError(f"--ckpt: expected two or more checkpoints to average, got {len(paths)}")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(
            f"--weight {weights}: expected one weight per checkpoint ({len(paths)}), none negative, not all zero"
        )
    total = sum(weights)
    mean: dict[str, torch.Tensor] = {}
    first_info = None
    for path, weight in zip(paths, weights, strict=True):
        info, state = read_checkpoint(path)
        if first_info is not None and not info.spec.same_network(first_info.spec):
            raise UserError(f"checkpoint {path}: network {info.spec} differs from {paths[0]}'s {first_info.spec}")
        if first_info is not None and set(state) != set(mean):
            raise UserError(f"checkpoint {path}: its weights are not named as {paths[0]}'s")
        first_info = first_info or info
        for name, value in state.items():
            if value.is_floating_point():
                mean[name] = mean.get(name, 0) + value.float() * (weight / total)
            else:  # counters (batch norm's num_batches_tracked): the first checkpoint's
                mean.setdefault(name, value)
    model = create(info.spec.arch, info.spec.encoder_name, info.spec.model_kwargs)  # the last one's description
    model.load_state_dict(mean)
    sources = [{"checkpoint": str(p), "weight": w / total} for p, w in zip(paths, weights, strict=True)]
    return model.eval(), info.with_meta(averaged_from=sources)


def read_checkpoint(path: str | Path) -> tuple[ModelInfo, dict]:
    """The description and the state dict of a .pt checkpoint, without building the network."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        # torch's own text advises weights_only=False, which would run code from the file: not for us
        raise UserError(
            f"checkpoint {path} could not be read ({type(error).__name__}): not a PyTorch file, or a damaged one; "
            "expected a .pt written by train.py or export.py"
        ) from None
    info = ModelInfo.from_dict(payload, str(path), kind="checkpoint")
    if not isinstance(payload.get("state_dict"), dict):
        raise UserError(f"checkpoint {path} holds no weights (no 'state_dict')")
    return info, payload["state_dict"]


def load_checkpoint(path: str | Path) -> tuple[nn.Module, ModelInfo]:
    """The model in eval mode, fp32, and its description."""
    info, state = read_checkpoint(path)
    return model_from(info, state, path), info


def model_from(info: ModelInfo, state: dict, path: str | Path) -> nn.Module:
    """The network a checkpoint describes, its weights loaded, in eval mode (a file read once)."""
    model = create(info.spec.arch, info.spec.encoder_name, info.spec.model_kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"checkpoint {path}: weights do not fit {info.spec}: {str(error)[:300]}") from None
    return model.eval()
