"""train()'s settings in two kinds: what the network learns with (Hyper) and where the run writes
and how often (Plumbing). Plain data; lib.training.train.train is the gin root that fills them."""

from dataclasses import dataclass

from lib.live.checks import check_number


@dataclass(frozen=True)
class Hyper:
    """What the network learns with (train()'s bindings of that kind)."""

    epochs: int
    max_steps: int | None
    max_minutes: float | None
    lr: float
    weight_decay: float
    warmup_steps: int
    grad_accum: int
    clip_grad_norm: float | None
    mixed_precision: str | None
    channels_last: bool
    seed: int

    def check(self) -> None:
        """Every number a user sets, checked before anything is built: one line naming the binding."""
        check_number("train.epochs", self.epochs, integer=True, low=1)
        check_number("train.grad_accum", self.grad_accum, integer=True, low=1)
        check_number("train.max_steps", self.max_steps, integer=True, low=1, optional=True)
        check_number("train.max_minutes", self.max_minutes, above=0, optional=True)
        # AdamW moves every weight by about lr each step. Measured on the lite recipe (60 steps from
        # ImageNet weights, warm-up and cosine as in train(); lib.training.failures.LOSS_LIMIT): lr 3
        # and 10 diverge and never come back (validation loss 2e8 and 2e10 on the way, 151 and 8.7e3
        # at the end), lr 1 learns nothing (training loss 0.83 at the end, a fresh network's), lr 0.3
        # and below learn (0.67 down to 0.32 at lr 1e-3).
        check_number("train.lr", self.lr, above=0, high=1)
        check_number("train.weight_decay", self.weight_decay, low=0, high=1)
        check_number("train.warmup_steps", self.warmup_steps, integer=True, low=0)
        check_number("train.clip_grad_norm", self.clip_grad_norm, above=0, optional=True)


@dataclass(frozen=True)
class Plumbing:
    """Where the run writes and how often (train()'s other bindings): nothing here changes the weights."""

    run_root: str
    log_every: int
    pics_every: int
    num_preview: int
    keep_checkpoints: int
    log_with: tuple[str, ...]
    export_formats: tuple[str, ...]
    eval_roots: tuple[str, ...]

    def check(self) -> None:
        for name in ("log_every", "pics_every", "keep_checkpoints"):
            check_number(f"train.{name}", getattr(self, name), integer=True, low=1)
        check_number("train.num_preview", self.num_preview, integer=True, low=0)
