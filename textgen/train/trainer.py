"""The trainer: stateful truncated BPTT, clipping, gradient health, checkpoints, exact resume.

One step: take the next (B, T) chunk of every stream, run it from the carried (detached)
hidden state, backprop, clip the global gradient norm, AdamW step. Every step logs the loss,
the gradient norm that ``clip_grad_norm_`` returns and whether it clipped; a non-finite loss
or gradient skips the step (counted), and several in a row stop training. Under ``torchrun``
the same loop runs data-parallel (DDP): each rank reads its own streams, rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textgen.data.dataset import PreparedCorpus, StreamBatcher
from textgen.data.tokenizer import Vocab, remap_table
from textgen.evaluation.evaluate import evaluate_ids
from textgen.hardware import pick_device
from textgen.model import checkpoint
from textgen.model import state as states
from textgen.model.charlm import CharLM
from textgen.model.config import ModelConfig
from textgen.train import snapshot
from textgen.train.averaging import WeightAverage, averaged
from textgen.train.config import TrainConfig, lr_at
from textgen.train.progress import Reporter, describe_limits, sample_text
from textgen.train.runlog import MetricsWriter
from textgen.train.runtime import (
    agree,
    init_distributed,
    install_signal_handlers,
    keep_freed_memory,
    make_optimizer,
    resolve_precision,
)
from textgen.train.snapshot import Health

log = logging.getLogger(__name__)


class _WithLoss(nn.Module):
    """Model plus loss in one forward, so DDP sees every parameter's use in forward()."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor, state):
        features, state = self.model(x, state)  # (B, T, H)
        return self.model.loss(features, y), state


class Trainer:
    """Trains a CharLM on a prepared corpus into a run folder (``out``)."""

    def __init__(
        self,
        data: str | Path,
        out: str | Path,
        model_cfg: ModelConfig,
        cfg: TrainConfig,
        vocab: Vocab | None = None,
        init: dict[str, Any] | None = None,
    ) -> None:
        """``vocab``: the model's vocabulary when it is not the corpus's (fine-tuning, or a
        resumed fine-tuning run); corpus ids are mapped onto it. ``init``: starting weights
        (``{"model": state_dict, "from": {...}}``, see textgen.train.finetune)."""
        self.corpus = PreparedCorpus.open(data)
        self.vocab = vocab or self.corpus.vocab
        if model_cfg.vocab_size != len(self.vocab):
            raise ValueError(
                f"model vocab_size {model_cfg.vocab_size} != vocabulary {len(self.vocab)}"
            )
        if self.vocab.level != self.corpus.vocab.level:
            raise ValueError(
                f"a {self.vocab.level}-level model cannot train on {data}, a "
                f"{self.corpus.vocab.level}-level corpus"
            )
        same = self.vocab.tokens == self.corpus.vocab.tokens
        self.lut = None if same else remap_table(self.corpus.vocab, self.vocab)
        self.init_from = init["from"] if init else None
        self.notes: dict[str, Any] = {}  # extra facts for config.json (the defaults chosen)
        self.out, self.cfg, self.model_cfg = Path(out), cfg, model_cfg
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # no page faults for each step's large buffers
        self.precision = resolve_precision(cfg.precision, self.device)
        self.dist = init_distributed(self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = CharLM(model_cfg)
        if init:
            self.model.load_state_dict(init["model"])
        self.model.to(self.device)
        self.net: nn.Module = _WithLoss(self.model)
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.net)
        self.optimizer = make_optimizer(self.model, cfg)
        self.average = WeightAverage(self.model, cfg.ema) if cfg.ema else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.batcher = StreamBatcher(
            self.corpus.split("train"),
            cfg.batch_size,
            cfg.seq_len,
            self.dist.rank,
            self.dist.world,
            lut=self.lut,
        )
        self.val = self.corpus.split("val")
        self.val_chars = self.corpus.token_chars("val")
        self.chars_per_token = self.corpus.chars_per_token("train")  # 1 at character level
        self.state = self.model.init_state(cfg.batch_size, self.device)
        self.step = 0
        self.elapsed = 0.0  # seconds of training so far, across resumes
        self.best_val: float | None = None
        self.evals_since_best = 0
        self.health = Health()
        self.stop_reason = ""
        self._stop_signal: str | None = None

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_dict(self, val_bpc: float | None = None) -> dict[str, Any]:
        return snapshot.capture(self, val_bpc)

    def save(self, name: str, val_bpc: float | None = None) -> Path | None:
        if not self.dist.main:
            return None
        if not checkpoint.all_finite(self.model.state_dict()):
            log.error("model weights are not finite: %s not written", name)
            return None
        return checkpoint.save(self.checkpoint_dict(val_bpc), self.out / name)

    def resume(self) -> bool:
        """Continue from ``out/last.pt`` if there is one; metrics.jsonl is cut back to its step."""
        path = self.out / "last.pt"
        if not path.is_file():
            return False
        snapshot.restore(self, checkpoint.load(path, map_location=self.device), path)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # ------------------------------------------------------------------ the loop
    def autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(self) -> dict[str, Any]:
        x, y, new_epoch = self.batcher.next()
        if new_epoch:
            self.state = self.model.init_state(self.cfg.batch_size, self.device)
        x_ids, y_ids = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        lr = lr_at(self.step, self.cfg, self.elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, state = self.net(x_ids, y_ids, self.state)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.clip if self.cfg.clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        loss_value = float(loss.detach())
        finite = math.isfinite(loss_value) and math.isfinite(norm)
        row = {
            "step": self.step + 1,
            "loss": loss_value,
            "grad_norm": norm,
            "lr": lr,
            "clipped": bool(finite and self.cfg.clip > 0 and norm > self.cfg.clip),
            "skipped": not finite,
            "epoch": self.batcher.epoch,
        }
        if finite or self.precision == "fp16":
            self.scaler.step(self.optimizer)  # fp16: the scaler itself skips inf steps
            self.scaler.update()
        if finite and self.average is not None:
            self.average.update()
        if finite:
            self.state = states.detach(state)
        else:  # a non-finite state would poison every later step: start the streams afresh
            self.state = self.model.init_state(self.cfg.batch_size, self.device)
        self._count(row)
        self.step += 1
        return row

    def _count(self, row: dict[str, Any]) -> None:
        h = self.health
        h.steps += 1
        h.clipped += int(row["clipped"])
        h.skipped += int(row["skipped"])
        h.bad_in_a_row = h.bad_in_a_row + 1 if row["skipped"] else 0
        row["clip_rate"] = h.clipped / h.steps
        row["skipped_total"] = h.skipped
        if row["skipped"]:
            log.warning(
                "step %d: non-finite loss or gradient (loss %s, grad norm %s): skipped",
                row["step"],
                row["loss"],
                row["grad_norm"],
            )

    def evaluate(self) -> dict[str, float]:
        """Validation bits per character (and per token), through the model's vocabulary."""
        return evaluate_ids(
            self.model,
            self.val,
            self.vocab,
            device=self.device,
            token_chars=self.val_chars,
            lut=self.lut,
        )

    def _eval_row(self, row: dict[str, Any]) -> float:
        """Evaluate into ``row`` (val_bpc, val_bits_per_token at word level, a sample); with
        --ema, of the averaged weights."""
        with averaged(self.average):
            r = self.evaluate()
            if self.cfg.sample_chars and self.dist.main:
                row["sample"] = self.sample()
        row["val_bpc"] = r["bpc"]
        if self.vocab.level != "char":
            row["val_bits_per_token"] = r["bits_per_token"]
        if "sample" in row:
            log.info("step %d sample: %s", self.step, row["sample"].replace("\n", "⏎"))
        self._after_eval(r["bpc"])
        return r["bpc"]

    def sample(self) -> str:
        """A short continuation of a fixed prompt (the validation text's first tokens).

        Drawn at temperature 0.8 from a generator of its own, so training's random streams
        (and so exact resume) are untouched.
        """
        prompt = np.asarray(self.val[:4], dtype=np.int64)
        if self.lut is not None:
            prompt = self.lut[prompt].astype(np.int64)
        return sample_text(self.model, self.vocab, prompt, self.cfg.sample_chars, self.device)

    def run(self) -> dict[str, Any]:
        """Train until max_steps, max_minutes, early stopping, a signal, or too many bad steps."""
        cfg = self.cfg
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_config()
            log.info("limits: %s", describe_limits(cfg))
        restore = install_signal_handlers(self._on_signal)
        metrics = MetricsWriter(self.out / "metrics.jsonl", enabled=self.dist.main)
        report = Reporter(self, enabled=self.dist.main)
        started = time.monotonic() - self.elapsed
        row: dict[str, Any] = {}
        last_val = None
        try:
            while not cfg.max_steps or self.step < cfg.max_steps:
                t0 = time.perf_counter()
                row = self.train_step()
                self.elapsed = time.monotonic() - started
                row["chars_per_s"] = report.chars_per_step / (time.perf_counter() - t0)
                if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                    last_val = self._eval_row(row)
                metrics.write(row)
                report.update(row)
                if self.step % cfg.save_every == 0:
                    self.save("last.pt")
                self._check_stop()
                if self.stop_reason:
                    break
        finally:
            report.close()
            restore()
        if self.stop_reason.startswith("non-finite"):
            metrics.close()
            raise FloatingPointError(self.stop_reason)
        if "val_bpc" not in row:  # training always ends with a validation pass
            final: dict[str, Any] = {"step": self.step, "final": True}
            last_val = self._eval_row(final)
            metrics.write(final)
        metrics.close()
        self.save("last.pt", last_val)
        if self.dist.main:
            from textgen.evaluation.plots import plot_curves

            plot_curves(self.out / "metrics.jsonl", self.out / "curves.png", title=str(self.out))
        return {
            "step": self.step,
            "val_bpc": last_val,
            "best_val_bpc": self.best_val,
            "stop_reason": self.stop_reason or "max_steps",
            "health": asdict(self.health),
        }

    def _write_config(self) -> None:
        path = self.out / "config.json"
        if "defaults" not in self.notes and path.is_file():  # a resumed run keeps its record
            self.notes = {**self.notes, "defaults": json.loads(path.read_text()).get("defaults")}
        doc = {
            "model": self.model_cfg.to_dict(),
            "train": asdict(self.cfg),
            "data": str(self.corpus.path),
            "precision": self.precision,
            "world_size": self.dist.world,
            "init_from": self.init_from,
            **self.notes,
        }
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")

    def _after_eval(self, val_bpc: float) -> None:
        """Keep best.pt and the early-stopping count."""
        if self.best_val is None or val_bpc < self.best_val:
            self.best_val, self.evals_since_best = val_bpc, 0
            self.save("best.pt", val_bpc)
        else:
            self.evals_since_best += 1
        log.info("step %d: val bpc %.4f (best %.4f)", self.step, val_bpc, self.best_val)

    def _check_stop(self) -> None:
        cfg = self.cfg
        reason = ""
        if self.health.bad_in_a_row >= cfg.max_bad_steps:
            reason = (
                f"non-finite loss or gradients for {self.health.bad_in_a_row} steps in a row "
                f"(at step {self.step}); lower lr (now {cfg.lr}) or keep clipping on"
            )
        elif self._stop_signal:
            reason = f"signal {self._stop_signal}"
        elif cfg.max_minutes and self.elapsed > cfg.max_minutes * 60:
            reason = "max_minutes"
        elif cfg.patience and self.evals_since_best >= cfg.patience:
            reason = "early stopping"
        self.stop_reason = agree(reason, self.dist.world, self.device)

    def _on_signal(self, name: str) -> None:
        self._stop_signal = name
