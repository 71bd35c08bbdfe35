"""How to train: ``TrainConfig`` (validated on construction) and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class TrainConfig:
    """How to train. Validated on construction; errors name the field and the value."""

    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    optimizer: str = "adamw"  # "sgd": plain SGD, whose steps scale with the gradient itself
    weight_decay: float = 0.01
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    clip: float = 1.0  # max global gradient norm; 0 turns clipping off (the norm is still logged)
    max_steps: int = 0  # 0: no step limit (the time budget ends the run)
    max_minutes: float = 0.0  # 0: no time limit; at least one of the two must be set
    eval_every: int = 200
    save_every: int = 200
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    max_bad_steps: int = 5  # non-finite steps in a row before training stops
    seed: int = 1234
    precision: str = "auto"  # auto: bf16 autocast where bf16 GEMMs are faster here, AMP on CUDA
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0: torch's default
    progress: bool = True
    log_every_s: float = 30.0  # a log line this often when there is no progress bar
    sample_chars: int = 60  # a sample this long from a fixed prompt at each evaluation; 0: none

    def __post_init__(self) -> None:
        for name in (
            "batch_size",
            "seq_len",
            "eval_every",
            "save_every",
            "max_bad_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_decay", "clip", "max_minutes", "warmup_steps", "patience", "threads",
                     "max_steps", "log_every_s", "sample_chars"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be adamw or sgd, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if not (self.max_steps or self.max_minutes):
            raise ValueError("set max_steps or max_minutes (or both): both are 0, got no limit")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown train settings: {', '.join(unknown)}")
        return cls(**d)


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine/linear decay to lr * min_lr_ratio.

    The decay runs over max_steps, or over max_minutes when that comes first: a time-limited
    run still ends on a decayed rate. (Its schedule then depends on the machine's speed.)
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    frac = 0.0
    if cfg.max_steps:
        frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    if cfg.max_minutes:
        frac = max(frac, elapsed_s / (cfg.max_minutes * 60))
    frac = min(1.0, frac)
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1 - frac
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape)
