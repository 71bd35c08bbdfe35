"""What a training checkpoint holds beyond the weights, and putting it back: exact resume.

``capture`` and ``restore`` are the two halves: everything the next step depends on (optimizer,
scaler, RNG, data position, the carried hidden state, counters) goes in, so a resumed run
continues bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from textgen import __version__
from textgen.model import checkpoint
from textgen.model.config import ModelConfig
from textgen.train.config import lr_at
from textgen.train.runlog import truncate_metrics

if TYPE_CHECKING:
    from textgen.train.trainer import Trainer


@dataclass
class Health:
    """Gradient health counters, carried in checkpoints."""

    steps: int = 0
    clipped: int = 0
    skipped: int = 0
    bad_in_a_row: int = 0


def capture(t: Trainer, val_bpc: float | None = None) -> dict[str, Any]:
    """The checkpoint dict of trainer ``t`` now (plain types and tensors only)."""
    state = t.state if isinstance(t.state, tuple) else (t.state,)
    return {
        "kind": "train",
        "textgen_version": __version__,
        "model_config": t.model_cfg.to_dict(),
        "model": t.model.state_dict(),
        "tokenizer": {
            "vocab": t.vocab.to_dict(),
            "level": t.vocab.level,
            "normalization": t.corpus.meta["normalization"],
            "script": t.corpus.meta.get("script"),
        },
        "init_from": t.init_from,
        "train_config": asdict(t.cfg),
        "data": {"path": str(t.corpus.path), "sources": t.corpus.meta["sources"]},
        "step": t.step,
        "elapsed_s": t.elapsed,
        "optimizer": t.optimizer.state_dict(),
        "scheduler": {
            "name": t.cfg.schedule,
            "step": t.step,
            "lr": lr_at(t.step, t.cfg, t.elapsed),
        },
        "scaler": t.scaler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "data_position": t.batcher.position(),
        "hidden_state": [h.detach().cpu() for h in state],
        "best_val_bpc": t.best_val,
        "val_bpc": val_bpc,
        "evals_since_best": t.evals_since_best,
        "health": asdict(t.health),
        "precision": t.precision,
        **averaged_weights(t),
    }


def averaged_weights(t: Trainer) -> dict[str, Any]:
    """The weight average's entries of a checkpoint (none without --ema)."""
    if t.average is None:
        return {}
    return {"averaged_model": t.average.state_dict(), "averaged_updates": t.average.updates}


def restore(t: Trainer, ckpt: dict[str, Any], path: Path) -> None:
    """Put trainer ``t`` back where ``ckpt`` (read from ``path``) left off."""
    if ModelConfig.from_dict(ckpt["model_config"]) != t.model_cfg:
        raise ValueError(f"{path} was trained with another model config; use a new --out")
    t.model.load_state_dict(ckpt["model"])
    if t.average is not None:  # a run that starts averaging on resume starts from its weights
        t.average.load_state_dict(
            checkpoint.inference_weights(ckpt), ckpt.get("averaged_updates", 0)
        )
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if ckpt["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    t.batcher.seek(ckpt["data_position"])
    hidden = [h.to(t.device) for h in ckpt["hidden_state"]]
    t.state = tuple(hidden) if len(hidden) == 2 else hidden[0]
    t.step = ckpt["step"]
    t.elapsed = ckpt.get("elapsed_s", 0.0)
    t.best_val = ckpt["best_val_bpc"]
    t.evals_since_best = ckpt["evals_since_best"]
    t.health = Health(**ckpt["health"])
    t.init_from = ckpt.get("init_from")
    if t.cfg.precision == "auto":  # the same choice as the run's first part: exact resume
        t.precision = ckpt.get("precision", t.precision)
    if t.dist.main:
        truncate_metrics(t.out / "metrics.jsonl", t.step)
