"""What a model file says about itself: which network, how to feed it, where it came from.

Every model file of this project carries one: a .pt checkpoint in its payload, TorchScript as an
extra file, ONNX in its metadata_props, an smp folder in a json beside the weights. So
evaluate.py, export.py, webcam.py and other programs need nothing but the file. Reading one needs
no network library (no smp import here).
"""

import json
from dataclasses import dataclass, field, replace

from lib.live.errors import UserError
from lib.live.preprocess import Preprocess

FORMAT = "person-seg"
VERSION = 1
META_KEY = "person_seg"  # the json's name inside exported files
_FORMATS_READ = (FORMAT, "person-seg-checkpoint")  # the checkpoints' tag before both were one


@dataclass(frozen=True)
class ModelSpec:
    """What lib.training.model.create needs to rebuild the network (without its weights)."""

    arch: str
    encoder_name: str
    model_kwargs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        # through json, so tuples become lists as in a file read back: specs compare equal either way
        kwargs = json.loads(json.dumps(self.model_kwargs or {}))
        return {"arch": self.arch, "encoder_name": self.encoder_name, "model_kwargs": kwargs}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(d["arch"], d["encoder_name"], dict(d.get("model_kwargs") or {}))

    def same_network(self, other: "ModelSpec") -> bool:
        mine, theirs = self.to_dict(), other.to_dict()
        return mine | {"arch": mine["arch"].lower()} == theirs | {"arch": theirs["arch"].lower()}

    def __str__(self) -> str:
        kwargs = f" {self.to_dict()['model_kwargs']}" if self.model_kwargs else ""
        return f"{self.arch}/{self.encoder_name}{kwargs}"


@dataclass(frozen=True)
class ModelInfo:
    """The description stored with every model file."""

    spec: ModelSpec
    prep: Preprocess
    meta: dict = field(default_factory=dict)  # run folder, epoch, scores: for people, not for loading

    def with_meta(self, **meta) -> "ModelInfo":
        return replace(self, meta={**self.meta, **meta})

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.spec.to_dict(),
            "preprocess": self.prep.to_dict(),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str, kind: str = "model file") -> "ModelInfo":
        """`source` names the file (a `kind`) in the error when `d` is not a description of this project."""
        if not isinstance(d, dict) or d.get("format") not in _FORMATS_READ:
            raise UserError(
                f"{source} is not a {kind} of this project (expected the '{FORMAT}' description that "
                "train.py and export.py write; a bare state dict does not say which network it belongs to)"
            )
        if d.get("version", 1) > VERSION:
            raise UserError(f"{source} was written by a newer version of this project (format {d['version']})")
        try:
            return cls(ModelSpec.from_dict(d["model"]), Preprocess.from_dict(d["preprocess"]), dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(f"{source}: its '{FORMAT}' description is incomplete ({error!r})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelInfo":
        try:
            d = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(f"{source}: its '{META_KEY}' metadata is not valid json") from None
        return cls.from_dict(d, source)
