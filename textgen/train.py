"""The trainer: stateful truncated BPTT, clipping, gradient health, checkpoints, exact resume.

One step: take the next (B, T) chunk of every stream, run it from the carried (detached)
hidden state, backprop, clip the global gradient norm, AdamW step. Every step logs the loss,
the gradient norm that ``clip_grad_norm_`` returns and whether it clipped; a non-finite loss
or gradient skips the step (counted), and several in a row stop training. Under ``torchrun``
the same loop runs data-parallel (DDP): each rank reads its own streams, rank 0 writes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textgen import __version__, checkpoint
from textgen.data import PreparedCorpus, StreamBatcher
from textgen.evaluate import evaluate_ids
from textgen.model import CharLM, ModelConfig
from textgen.progress import Reporter, describe_limits, sample_text
from textgen.tokenizer import Vocab, remap_table

log = logging.getLogger(__name__)
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def cpu_bf16_pays() -> bool:
    """True when bf16 GEMMs are clearly faster than fp32 ones here; measured once (~0.3 s).

    Having the instructions is not enough. Two of this project's 2-core machines, both with
    AVX-512 BF16 and no AMX: on one (AMD EPYC; DESIGN.md's figures) a GEMM ran at ~730 GFLOP/s
    in bf16 against ~380 in fp32; on the other (Intel Xeon) at 137 against 226, and the
    default 1x512 LSTM trained at 9.5k chars/s under bf16 autocast against 13.3k in fp32.
    The shape is the training step's: (batch 32 x 128 steps, 512) x (512, 4 x 512).
    """
    if not cpu_has_bf16():
        return False
    took = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = torch.randn(4096, 512).to(dtype), torch.randn(2048, 512).to(dtype)
        torch.nn.functional.linear(x, w)  # warm-up: oneDNN builds its kernel here
        t0 = time.perf_counter()
        for _ in range(4):
            torch.nn.functional.linear(x, w)
        took[dtype] = time.perf_counter() - t0
    pays = took[torch.bfloat16] < 0.8 * took[torch.float32]
    log.info("precision auto: a bf16 GEMM took %.1f ms, fp32 %.1f ms -> %s",
             took[torch.bfloat16] * 250, took[torch.float32] * 250, "bf16" if pays else "fp32")  # fmt: skip
    return pays


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(
                "precision 'fp16' (AMP with loss scaling) needs a CUDA device; use bf16 on CPU"
            )
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_pays() else "fp32"


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused: one kernel over all parameters, about twice as fast on CPU), or plain SGD.

    Adam divides each step by the running gradient size, so a huge gradient does not make a
    huge step; plain SGD steps in proportion to the gradient, which is where clipping is what
    keeps an unstable run alive (see docs/gradients.md).
    """
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
    )


class _WithLoss(nn.Module):
    """Model plus loss in one forward, so DDP sees every parameter's use in forward()."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor, state):
        features, state = self.model(x, state)  # (B, T, H)
        return self.model.loss(features, y), state


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def shutdown_distributed(wait: bool = True) -> None:
    """Leave the process group before the interpreter exits.

    Exiting with the group still up lets gloo's worker threads outlive the interpreter; a
    rank that finishes first can then abort ("terminate called without an active
    exception", SIGABRT) and torchrun reports the whole run as failed. With ``wait`` a
    barrier keeps a rank from tearing down while another is still saving; after an error
    there is no wait (the other ranks may never arrive).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@dataclass
class Health:
    """Gradient health counters, carried in checkpoints."""

    steps: int = 0
    clipped: int = 0
    skipped: int = 0
    bad_in_a_row: int = 0


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
        (``{"model": state_dict, "from": {...}}``, see textgen.finetune)."""
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
        state = self.state if isinstance(self.state, tuple) else (self.state,)
        return {
            "kind": "train",
            "textgen_version": __version__,
            "model_config": self.model_cfg.to_dict(),
            "model": self.model.state_dict(),
            "tokenizer": {
                "vocab": self.vocab.to_dict(),
                "level": self.vocab.level,
                "normalization": self.corpus.meta["normalization"],
                "script": self.corpus.meta.get("script"),
            },
            "init_from": self.init_from,
            "train_config": asdict(self.cfg),
            "data": {"path": str(self.corpus.path), "sources": self.corpus.meta["sources"]},
            "step": self.step,
            "elapsed_s": self.elapsed,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "name": self.cfg.schedule,
                "step": self.step,
                "lr": lr_at(self.step, self.cfg, self.elapsed),
            },
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "data_position": self.batcher.position(),
            "hidden_state": [t.detach().cpu() for t in state],
            "best_val_bpc": self.best_val,
            "val_bpc": val_bpc,
            "evals_since_best": self.evals_since_best,
            "health": asdict(self.health),
            "precision": self.precision,
        }

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
        ckpt = checkpoint.load(path, map_location=self.device)
        if ckpt["model_config"] != self.model_cfg.to_dict():
            raise ValueError(f"{path} was trained with another model config; use a new --out")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if ckpt["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        self.batcher.seek(ckpt["data_position"])
        hidden = [t.to(self.device) for t in ckpt["hidden_state"]]
        self.state = tuple(hidden) if len(hidden) == 2 else hidden[0]
        self.step = ckpt["step"]
        self.elapsed = ckpt.get("elapsed_s", 0.0)
        self.best_val = ckpt["best_val_bpc"]
        self.evals_since_best = ckpt["evals_since_best"]
        self.health = Health(**ckpt["health"])
        self.init_from = ckpt.get("init_from")
        if self.cfg.precision == "auto":  # the same choice as the run's first part: exact resume
            self.precision = ckpt.get("precision", self.precision)
        if self.dist.main:
            truncate_metrics(self.out / "metrics.jsonl", self.step)
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
        x = torch.from_numpy(x).to(self.device)
        y = torch.from_numpy(y).to(self.device)
        lr = lr_at(self.step, self.cfg, self.elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, state = self.net(x, y, self.state)
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
        if finite:
            self.state = CharLM.detach_state(state)
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
        """Evaluate into ``row`` (val_bpc, val_bits_per_token at word level, a sample)."""
        r = self.evaluate()
        row["val_bpc"] = r["bpc"]
        if self.vocab.level != "char":
            row["val_bits_per_token"] = r["bits_per_token"]
        if self.cfg.sample_chars and self.dist.main:
            row["sample"] = self.sample()
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
        restore = self._install_signal_handlers()
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
            from textgen.plots import plot_curves

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
        self.stop_reason = self._agree(reason)

    def _agree(self, reason: str) -> str:
        """All ranks stop together: any rank's reason stops every rank."""
        if self.dist.world == 1:
            return reason
        import torch.distributed as dist

        flag = torch.tensor([1.0 if reason else 0.0], device=self.device)
        dist.all_reduce(flag)
        return reason or ("another rank stopped" if flag.item() > 0 else "")

    def _install_signal_handlers(self):
        """SIGTERM/SIGINT: finish the current step, save, exit cleanly."""

        def handler(signum, _frame):
            self._stop_signal = signal.Signals(signum).name

        try:
            old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread: no signal handling
            return lambda: None
        return lambda: [signal.signal(s, h) for s, h in old.items()]


class MetricsWriter:
    """Appends one JSON object per line, flushed so a kill loses at most a torn last line."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.f = open(path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115

    def write(self, row: dict[str, Any]) -> None:
        if self.f:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f:
            self.f.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Keep rows up to `step`; drop later rows and a torn last line (from a kill)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step and not row.get("final"):
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
