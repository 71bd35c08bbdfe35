"""Character-level recurrent language model (LSTM / GRU / tanh-RNN baseline).

The model is split into a *body* and a *head*:

* ``CharLM.forward(ids, state)`` embeds ``ids`` (B, T), runs the recurrent stack (through
  the backend textgen.model.recurrent picks) and returns dropout-regularised hidden features
  (B, T, H) plus the new state (textgen.model.state).
* the head turns features into scores: ``logits`` / ``log_probs`` give (B, T, V);
  ``loss`` gives the mean NLL in nats per token without materialising full
  log-probabilities when the adaptive softmax is used.
* ``step_log_probs(ids, state)`` combines both for generation and evaluation.

Mixed precision: the model runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
Matmuls run in bf16 while every log-softmax is computed in float32, and the returned
state is always in the parameter dtype (float32) so it can be carried across autocast
and non-autocast calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textgen.model import recurrent
from textgen.model.config import ADAPTIVE_DIV_VALUE, ModelConfig
from textgen.model.layers import Dropout, adaptive_log_probs, adaptive_nll
from textgen.model.state import State, map_state

__all__ = ["CharLM", "ModelConfig", "State"]


class CharLM(nn.Module):
    """Embedding -> recurrent stack -> dropout -> (full | adaptive) softmax head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
        extra = {"nonlinearity": c.activation} if c.cell == "rnn" else {}
        self.rnn = rnn_cls(
            c.embed_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,  # CPU training uses ours instead
            batch_first=True,
            **extra,
        )
        locked = c.dropout_mask == "locked"
        self.drop = Dropout(c.dropout, locked=locked)  # outputs (and between layers)
        self.drop_in = Dropout(c.resolved_input_dropout(), locked=locked)  # embeddings
        self.embed_drop = Dropout(c.embed_dropout)  # whole rows of the embedding table
        self.weight_drop = Dropout(c.weight_drop)  # DropConnect on W_hh
        self.decoder: nn.Linear | None = None
        self.adaptive: nn.AdaptiveLogSoftmaxWithLoss | None = None
        if c.softmax == "full":
            self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        else:
            cutoffs = list(c.resolved_cutoffs())
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                c.hidden_size, c.vocab_size, cutoffs, div_value=ADAPTIVE_DIV_VALUE
            )
        self._init_weights()

    def _init_weights(self) -> None:
        # N(0, 1) embeddings (PyTorch's default) give the first layer's gates a real input signal
        # from step 1. The word-LM example's U(-0.1, 0.1) makes the input term of each gate
        # ~0.02 against a bias of 0-1: the LSTM then ignores its input and sits on the unigram
        # plateau for hundreds of steps (docs/architecture.md has the figures). A tied
        # embedding doubles as the decoder, so it keeps the small scale.
        if self.config.tie_weights:
            nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        else:
            nn.init.normal_(self.embed.weight, 0.0, 1.0)
        if self.decoder is not None:
            nn.init.zeros_(self.decoder.bias)
            if self.config.tie_weights:
                self.decoder.weight = self.embed.weight  # same Parameter, (V, H)
            else:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        if self.config.cell == "lstm":
            h = self.config.hidden_size
            with torch.no_grad():  # gate order i, f, g, o; total forget bias = forget_bias
                for layer in range(self.config.num_layers):
                    getattr(self.rnn, f"bias_ih_l{layer}")[h : 2 * h].fill_(self.config.forget_bias)
                    getattr(self.rnn, f"bias_hh_l{layer}")[h : 2 * h].zero_()

    # ----------------------------------------------------------------- body
    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) long -> features (B, T, H) after dropout, new state (L, B, H)."""
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, time), got shape {tuple(ids.shape)}")
        x = self.drop_in(self._embed(ids))  # (B, T, E)
        weight_drop = self.weight_drop if self.weight_drop.active else None
        r = recurrent.route(self.rnn, self.config.cell, x, self.training, weight_drop is not None)
        if r.backend == "torch":
            out, new_state = self.rnn(x, state)
        else:
            start = state if state is not None else self.init_state(ids.size(0), x.device)
            out, new_state = recurrent.run(
                self.rnn, self.config.cell, x, start, self.drop, r, weight_drop
            )
        return self.drop(out), self._to_param_dtype(new_state)

    def _embed(self, ids: Tensor) -> Tensor:
        """Embedding lookup; in training with embedding dropout, a character's whole row is
        dropped (for every position it occurs at in this step), the others scaled up."""
        if not self.embed_drop.active:
            return self.embed(ids)
        w = self.embed.weight
        return F.embedding(ids, w * self.embed_drop.mask((w.size(0), 1), w.dtype, w.device))

    def _to_param_dtype(self, state: State) -> State:
        # Under autocast LSTM/RNN return bf16 state; keep carried state in float32.
        return map_state(state, lambda t: t.to(self.embed.weight.dtype))

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state, (L, B, H) or an (h, c) pair of those for LSTM."""
        p = self.embed.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = torch.zeros(shape, dtype=p.dtype, device=device if device is not None else p.device)
        return (h, torch.zeros_like(h)) if self.config.cell == "lstm" else h

    # ----------------------------------------------------------------- head
    def logits(self, features: Tensor) -> Tensor:
        """features (B, T, H) -> scores (B, T, V); adaptive returns log-probs (valid logits)."""
        if self.decoder is not None:
            return self.decoder(features)
        return self.log_probs(features)

    def log_probs(self, features: Tensor) -> Tensor:
        """features (B, T, H) -> float32 log-probabilities (B, T, V)."""
        if self.decoder is not None:
            return F.log_softmax(self.decoder(features).float(), dim=-1)
        flat = features.reshape(-1, features.size(-1))  # (N, H)
        return adaptive_log_probs(self._adaptive(), flat).view(*features.shape[:-1], -1)

    def loss(self, features: Tensor, targets: Tensor) -> Tensor:
        """features (B, T, H), targets (B, T) -> mean NLL, nats per token (float32 scalar)."""
        flat = features.reshape(-1, features.size(-1))  # (N, H)
        y = targets.reshape(-1)  # (N,)
        if self.decoder is not None:
            return F.cross_entropy(self.decoder(flat).float(), y)
        return adaptive_nll(self._adaptive(), flat, y).mean()

    def _adaptive(self) -> nn.AdaptiveLogSoftmaxWithLoss:
        if self.adaptive is None:
            raise RuntimeError("this model has a full softmax, not an adaptive one")
        return self.adaptive

    def step_log_probs(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> (log-probs (B, T, V) float32, new state)."""
        features, state = self(ids, state)
        return self.log_probs(features), state
