"""Training progress a person reads: the bar or periodic log lines, and evaluation samples.

On a terminal a tqdm bar; otherwise (``--no-progress``, output to a file, a service) a log
line every ``log_every_s`` seconds. At each evaluation the trainer logs a short sample from a
fixed prompt (:func:`sample_text`), so a long run shows what it has learned, not only numbers.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from textgen.data.tokenizer import Vocab, make_tokenizer
from textgen.model.charlm import CharLM

log = logging.getLogger("textgen.train.trainer")  # the trainer's log: one stream for a run


def describe_limits(cfg: Any) -> str:
    """What will end the run, in words, for the start of the log."""
    parts = []
    if cfg.max_minutes:
        parts.append(f"{cfg.max_minutes:g} minutes")
    if cfg.max_steps:
        parts.append(f"{cfg.max_steps:,} steps")
    if len(parts) == 2:
        return f"{parts[0]} or {parts[1]}, whichever comes first"
    only = "time budget" if cfg.max_minutes else "step limit"
    return f"{parts[0]} ({only}; no {'step' if cfg.max_minutes else 'time'} limit)"


class Reporter:
    """Progress: a tqdm bar on a terminal; otherwise (or with --no-progress) a log line every
    ``log_every_s`` seconds with step, loss, BPC, gradient norm, clip rate, chars/s and ETA.
    Also says once, early, which limit will end a run that has both."""

    def __init__(self, trainer: Any, enabled: bool = True) -> None:
        """``trainer``: a textgen.train.trainer.Trainer (its cfg, dist, step, elapsed)."""
        cfg = trainer.cfg
        self.trainer, self.cfg = trainer, cfg
        self.chars_per_step = cfg.batch_size * cfg.seq_len * trainer.dist.world
        self.bits = 1 / (math.log(2) * trainer.chars_per_token)  # nats/token -> bits/char
        self.use_bar = enabled and cfg.progress and sys.stderr.isatty()
        self.use_log = enabled and not self.use_bar
        self.bar = tqdm(
            total=cfg.max_steps or None,
            initial=trainer.step,
            disable=not self.use_bar,
            dynamic_ncols=True,
            desc="train",
        )
        self.t_start = time.monotonic()
        self.step_start = trainer.step
        self.last_log = self.t_start
        self.said_which = not (cfg.max_steps and cfg.max_minutes)

    def update(self, row: dict[str, Any]) -> None:
        bpc = row["loss"] * self.bits
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{row['loss']:.3f}",
            bpc=f"{bpc:.2f}",
            gnorm=f"{row['grad_norm']:.2f}",
            clip=f"{row['clip_rate']:.0%}",
            cps=f"{row['chars_per_s']:.0f}",
            refresh=False,
        )
        now = time.monotonic()
        if not self.use_log or now - self.last_log < self.cfg.log_every_s:
            return
        self.last_log = now
        rate = (self.trainer.step - self.step_start) / max(now - self.t_start, 1e-9)  # steps/s
        log.info(
            "step %d  loss %.4f  bpc %.3f  grad-norm %.3f  clipped %.1f%%  %.0f chars/s  ETA %s",
            row["step"],
            row["loss"],
            bpc,
            row["grad_norm"],
            100 * row["clip_rate"],
            rate * self.chars_per_step,
            _clock(self.eta(rate)),
        )
        if not self.said_which:
            self.said_which = True
            steps_s = (self.cfg.max_steps - self.trainer.step) / max(rate, 1e-9)
            budget_s = self.cfg.max_minutes * 60 - self.trainer.elapsed
            which = "the step limit" if steps_s < budget_s else "the time budget"
            log.info("at %.2f steps/s, %s will end this run", rate, which)

    def eta(self, rate: float) -> float:
        """Seconds left: the nearer of the time budget and the step limit."""
        left = []
        if self.cfg.max_minutes:
            left.append(self.cfg.max_minutes * 60 - self.trainer.elapsed)
        if self.cfg.max_steps:
            left.append((self.cfg.max_steps - self.trainer.step) / max(rate, 1e-9))
        return max(0.0, min(left))

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


@torch.no_grad()
def sample_text(
    model: CharLM, vocab: Vocab, prompt: np.ndarray, chars: int, device: torch.device
) -> str:
    """Prompt plus about ``chars`` characters sampled at temperature 0.8 (seeded, own RNG)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.as_tensor(prompt, dtype=torch.long, device=device)[None]  # (1, T)
    logp, state = model.step_log_probs(ids)
    decode = make_tokenizer(vocab).decode
    out: list[int] = []
    text = ""
    while len(text) < chars:
        probs = (logp[0, -1] / 0.8).softmax(-1).cpu()  # (V,)
        probs[vocab.unk_id] = 0
        out.append(int(torch.multinomial(probs, 1, generator=gen)))
        text = decode(out)
        logp, state = model.step_log_probs(torch.tensor([[out[-1]]], device=device), state)
    model.train(was_training)
    return decode(prompt.tolist()) + text
