"""How to train: ``TrainConfig`` (validated on construction) and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from textgen.fields import opt

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class TrainConfig:
    """How to train. Validated on construction; errors name the field and the value."""

    batch_size: int = opt(32, "parallel streams per step")
    seq_len: int = opt(128, "truncated BPTT length")
    lr: float = opt(3e-3, "peak learning rate (AdamW)")
    optimizer: str = opt("adamw", "adamw (default) | sgd (plain SGD, where clipping matters most)")
    weight_decay: float = opt(
        0.01,
        "AdamW's decoupled weight decay; a new run's defaults rule sets 0.1 (measured better at every budget), fine-tuning keeps 0.01",
    )
    warmup_steps: int = opt(100, "linear warm-up steps")
    schedule: str = opt("cosine", "cosine | linear | constant decay after warm-up")
    min_lr_ratio: float = opt(0.1, "the decay ends at lr times this")
    clip: float = opt(1.0, "max global gradient norm; 0 turns clipping off")
    ema: float = opt(
        0.0,
        "weight averaging: evaluate, keep and export an exponential moving average of the weights with this decay, e.g. 0.999 (0: off)",
    )
    max_steps: int = opt(0, "stop after this many steps (default: no step limit)")
    max_minutes: float = opt(
        0.0,
        "time budget in minutes; the learning rate decays over it and the defaults are chosen for it (default 15 when no --max-steps is given)",
    )
    eval_every: int = opt(
        200,
        "validation BPC every N steps (default: the defaults rule's, about every 10x the validation split's characters; 200 when fine-tuning)",
    )
    save_every: int = opt(
        200,
        "write last.pt every N steps (default: the defaults rule's, every 819,200 training characters; 200 when fine-tuning)",
    )
    patience: int = opt(0, "stop after N evaluations without improvement (0: off)")
    max_bad_steps: int = opt(5, "non-finite steps in a row before stopping")
    seed: int = opt(1234, "seed for initialisation and dropout")
    precision: str = opt(
        "auto",
        "auto | fp32 | bf16 | fp16 (auto: bf16 where this CPU runs bf16 GEMMs faster than fp32, measured at start; AMP on CUDA)",
    )
    device: str = opt("auto", "auto | cpu | cuda[:N]")
    threads: int = opt(0, "torch CPU threads (0: default)")
    progress: bool = True
    log_every_s: float = opt(30.0, "seconds between log lines when there is no progress bar")
    sample_chars: int = opt(60, "characters of the sample logged at each evaluation (0: none)")

    def __post_init__(self) -> None:
        at_least = {  # lower bound -> the fields it holds for
            1: ("batch_size", "seq_len", "eval_every", "save_every", "max_bad_steps"),
            0: (
                "weight_decay",
                "clip",
                "max_minutes",
                "warmup_steps",
                "patience",
                "threads",
                "max_steps",
                "log_every_s",
                "sample_chars",
            ),
        }
        for low, names in at_least.items():
            for name in names:
                if getattr(self, name) < low:
                    raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
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
