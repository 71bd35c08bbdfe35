"""Character-level recurrent language model (LSTM / GRU / tanh-RNN baseline).

The model is split into a *body* and a *head*:

* ``CharLM.forward(ids, state)`` embeds ``ids`` (B, T), runs the recurrent stack and
  returns dropout-regularised hidden features (B, T, H) plus the new state.
* the head turns features into scores: ``logits`` / ``log_probs`` give (B, T, V);
  ``loss`` gives the mean NLL in nats per token without materialising full
  log-probabilities when the adaptive softmax is used.
* ``step_log_probs(ids, state)`` combines both for generation and evaluation.

State is a tensor (L, B, H) for GRU/RNN and an ``(h, c)`` pair of such tensors for
LSTM.  ``select_state`` / ``stack_states`` / ``split_state`` move per-request states in
and out of a batch (dim 1) for a batching generation server.

Mixed precision: the model runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``.
Matmuls run in bf16 while every log-softmax is computed in float32, and the returned
state is always in the parameter dtype (float32) so it can be carried across autocast
and non-autocast calls.  ``nn.AdaptiveLogSoftmaxWithLoss.forward`` cannot be used under
autocast when its input is float32 (GRU features stay float32 under CPU autocast): it
allocates its output with the input's dtype and then ``index_copy_``s bf16 cluster
log-probs into it.  The adaptive loss is therefore computed here from the module's own
``head`` / ``tail`` layers (same parameters, same algorithm, float32 log-softmax).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textgen.cpu_gru import gru_layer
from textgen.cpu_lstm import lstm_layer
from textgen.native import cpu_lstm_ops

State = Tensor | tuple[Tensor, Tensor]  # (L, B, H) or LSTM (h, c), each (L, B, H)

CELLS = ("lstm", "gru", "rnn")
SOFTMAXES = ("full", "adaptive")
DEFAULT_CUTOFFS = (500, 2000)
ADAPTIVE_DIV_VALUE = 4.0  # tail cluster i projects to hidden_size / 4**(i+1) dims


def _map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """Apply ``fn`` to the tensor, or to both tensors of an LSTM (h, c) state."""
    return (fn(state[0]), fn(state[1])) if isinstance(state, tuple) else fn(state)


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


class Dropout(nn.Module):
    """Inverted dropout with a cheaper mask on CPU; ``nn.Dropout`` everywhere else.

    On CPU ``nn.Dropout`` draws one float per element with ``bernoulli_``: for a (4096, 512)
    activation that is ~20 ms on one thread, about as long as a 4096x512x512 matmul. Here one
    64-bit draw from the same (seeded, checkpointed) generator gives four 16-bit numbers, and
    an element is kept when its number is >= ``p * 65536``: ~5x cheaper. ``p`` is thereby
    rounded to a multiple of 1/65536, and kept elements are scaled by 1 / (1 - that p).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        self.p = p
        self._threshold = round(p * 65536) - 32768  # keep int16 values >= this
        self._scale = 65536 / (65536 - round(p * 65536))

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self._threshold == -32768:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        return x * self.mask(x.shape, x.dtype)

    def mask(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """0 or 1 / (1 - p) per element, ``dtype``, on CPU."""
        n = math.prod(shape)
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
        keep = words.view(torch.int16)[:n].view(shape) >= self._threshold
        return keep.to(dtype).mul_(self._scale)


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`CharLM`; validated on construction.

    ``forget_bias`` (LSTM only) is the *total* initial forget-gate bias: it is written to
    ``bias_ih`` and the forget slice of ``bias_hh`` is zeroed, so their sum equals it.
    ``cutoffs`` (adaptive softmax only): empty means ``(500, 2000)`` clipped to the
    vocabulary, see :meth:`resolved_cutoffs`.
    """

    vocab_size: int
    cell: str = "lstm"
    embed_dim: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.1
    tie_weights: bool = False
    forget_bias: float = 1.0
    softmax: str = "full"
    cutoffs: tuple[int, ...] = ()
    bidirectional: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
            _check_positive_int(name, getattr(self, name))
        _check_choice("cell", self.cell, CELLS)
        _check_choice("softmax", self.softmax, SOFTMAXES)
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.forget_bias, (int, float)) or not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {self.forget_bias!r}")
        if self.bidirectional:
            raise ValueError(
                "bidirectional must be False, got True: a language model predicts the next "
                "character and cannot see the future, so a backward RNN would leak targets"
            )
        self._check_tying()
        self._check_cutoffs()

    def _check_tying(self) -> None:
        if not self.tie_weights:
            return
        if self.embed_dim != self.hidden_size:
            raise ValueError(
                "tie_weights=True needs embed_dim == hidden_size, got "
                f"embed_dim={self.embed_dim}, hidden_size={self.hidden_size}"
            )
        if self.softmax != "full":
            raise ValueError(f"tie_weights=True needs softmax='full', got {self.softmax!r}")

    def _check_cutoffs(self) -> None:
        if not isinstance(self.cutoffs, (tuple, list)):
            raise ValueError(f"cutoffs must be a tuple of ints, got {self.cutoffs!r}")
        cutoffs = self.cutoffs = tuple(self.cutoffs)
        if self.softmax != "adaptive":
            if cutoffs:
                raise ValueError(f"cutoffs only apply to softmax='adaptive', got {cutoffs!r}")
            return
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 for adaptive softmax, got {self.vocab_size}")
        in_range = all(type(c) is int and 0 < c < self.vocab_size for c in cutoffs)
        if not in_range or list(cutoffs) != sorted(set(cutoffs)):
            raise ValueError(
                "cutoffs must be strictly increasing integers in [1, vocab_size - 1] "
                f"(vocab_size={self.vocab_size}), got {cutoffs!r}"
            )
        n_tails = len(self.resolved_cutoffs())
        if self.hidden_size < ADAPTIVE_DIV_VALUE**n_tails:
            raise ValueError(
                f"hidden_size must be >= {int(ADAPTIVE_DIV_VALUE**n_tails)} for {n_tails} adaptive "
                f"tail clusters (each projects to hidden_size / 4**i dims), got {self.hidden_size}"
            )

    def resolved_cutoffs(self) -> tuple[int, ...]:
        """Cutoffs actually used by the adaptive softmax."""
        if self.cutoffs:
            return self.cutoffs
        clipped = tuple(c for c in DEFAULT_CUTOFFS if c < self.vocab_size)
        return clipped or (max(1, self.vocab_size // 2),)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON / ``torch.load(weights_only=True)`` safe)."""
        d = dataclasses.asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {', '.join(unknown)}")
        return cls(**d)


class CharLM(nn.Module):
    """Embedding -> recurrent stack -> dropout -> (full | adaptive) softmax head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
        self.rnn = rnn_cls(
            c.embed_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            dropout=c.dropout if c.num_layers > 1 else 0.0,  # CPU training uses ours instead
            batch_first=True,
        )
        self.drop = Dropout(c.dropout)
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
        # plateau (~9.4 bits) for hundreds of steps (measured: validation 9.33 vs 6.96 BPC after
        # 300 steps). A tied embedding doubles as the decoder, so it keeps the small scale.
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
        x = self.drop(self.embed(ids))  # (B, T, E)
        cpu_dtype = self._cpu_rnn_dtype(x)
        if cpu_dtype is not None or (
            self.training and self.rnn.dropout > 0 and x.device.type == "cpu"
        ):
            out, new_state = self._layer_by_layer(x, state, cpu_dtype)
        else:
            out, new_state = self.rnn(x, state)  # (B, T, H)
        return self.drop(out), self._to_param_dtype(new_state)

    def _layer_by_layer(
        self, x: Tensor, state: State | None, cpu_dtype: torch.dtype | None = None
    ) -> tuple[Tensor, State]:
        """The stacked RNN one layer at a time, with our Dropout between layers.

        On CPU nn.LSTM's own inter-layer dropout uses bernoulli_ (slow, see Dropout). Each
        layer runs through the same op nn.LSTM calls (``torch._VF``; oneDNN runs a stacked RNN
        layer by layer anyway) with that layer's weights, so parameters and checkpoints are
        nn.LSTM's. Without dropout it equals ``self.rnn`` exactly (tested).

        With ``cpu_dtype`` (see :meth:`_cpu_rnn_dtype`) each layer runs through
        textgen.cpu_gru or textgen.cpu_lstm instead, its GEMMs in that dtype: nn.GRU has no
        fused CPU kernel and its forward + backward take ~2.1x its GEMMs' time, cpu_gru's C++
        loops ~1.3x (bf16, benchmarks/rnn_ceiling.py). Same parameters, same maths (equal to
        nn.GRU / nn.LSTM in float32, tested).
        """
        rnn, n_layers = self.rnn, self.config.num_layers
        if state is None:
            state = self.init_state(x.size(0), x.device)
        per_layer = len(rnn._flat_weights) // n_layers
        hs, cs = [], []
        for layer in range(n_layers):
            if layer:
                x = self.drop(x)
            weights = rnn._flat_weights[layer * per_layer : (layer + 1) * per_layer]
            args = (weights, rnn.bias, 1, 0.0, True, False, True)  # 1 layer, train, batch-first
            if isinstance(state, tuple) and cpu_dtype is not None:  # time-major inside
                out, h_l, c_l = lstm_layer(x.transpose(0, 1), state[0][layer], state[1][layer],
                                           weights, cpu_dtype)  # fmt: skip
                x, h_l = out.transpose(0, 1), h_l[None]
                cs.append(c_l[None])
            elif isinstance(state, tuple):  # LSTM
                h, c = state
                x, h_l, c_l = torch._VF.lstm(x, (h[layer : layer + 1], c[layer : layer + 1]), *args)
                cs.append(c_l)
            elif cpu_dtype is not None:  # time-major inside; the transposes are views
                out, h_l = gru_layer(x.transpose(0, 1), state[layer], weights, cpu_dtype)
                x, h_l = out.transpose(0, 1), h_l[None]
            else:
                run = torch._VF.gru if self.config.cell == "gru" else torch._VF.rnn_tanh
                x, h_l = run(x, state[layer : layer + 1], *args)
            hs.append(h_l)
        h_n = torch.cat(hs)
        return x, ((h_n, torch.cat(cs)) if cs else h_n)

    def _cpu_rnn_dtype(self, x: Tensor) -> torch.dtype | None:
        """The GEMM dtype for textgen.cpu_gru / cpu_lstm when they apply, else None.

        GRU training on CPU: bf16 under CPU bf16 autocast, float32 without autocast. LSTM
        training on CPU: bf16 under bf16 autocast where textgen.native built the C++ loops
        (forward + backward at the benchmark shape: 305 vs nn.LSTM's 348 ms; in float32 they
        were slower, 652 vs 600 ms, so float32 keeps nn.LSTM). None (nn.GRU / nn.LSTM) in
        eval, without grad, under fp16 autocast, off CPU, and for the plain RNN.
        """
        cell = self.config.cell
        if not (self.training and cell in ("gru", "lstm") and x.device.type == "cpu"):
            return None
        if not (torch.is_grad_enabled() and self.rnn.bias):
            return None
        if torch.is_autocast_enabled("cpu"):
            if torch.get_autocast_dtype("cpu") != torch.bfloat16:
                return None
            if cell == "lstm" and (self.rnn.proj_size or cpu_lstm_ops() is None):
                return None
            return torch.bfloat16
        return torch.float32 if cell == "gru" and x.dtype == torch.float32 else None

    def _to_param_dtype(self, state: State) -> State:
        # Under autocast LSTM/RNN return bf16 state; keep carried state in float32.
        return _map_state(state, lambda t: t.to(self.embed.weight.dtype))

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
        return self._adaptive_log_probs(flat).view(*features.shape[:-1], -1)

    def loss(self, features: Tensor, targets: Tensor) -> Tensor:
        """features (B, T, H), targets (B, T) -> mean NLL, nats per token (float32 scalar)."""
        flat = features.reshape(-1, features.size(-1))  # (N, H)
        y = targets.reshape(-1)  # (N,)
        if self.decoder is not None:
            return F.cross_entropy(self.decoder(flat).float(), y)
        return self._adaptive_nll(flat, y).mean()

    def step_log_probs(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids (B, T) -> (log-probs (B, T, V) float32, new state)."""
        features, state = self(ids, state)
        return self.log_probs(features), state

    def _adaptive_log_probs(self, x: Tensor) -> Tensor:
        # x (N, H) -> (N, V); same maths as AdaptiveLogSoftmaxWithLoss.log_prob
        asm = self.adaptive
        assert asm is not None
        head = F.log_softmax(asm.head(x).float(), dim=-1)  # (N, shortlist + clusters)
        parts = [head[:, : asm.shortlist_size]]
        for i, tail in enumerate(asm.tail):
            cluster = F.log_softmax(tail(x).float(), dim=-1)  # (N, cluster size)
            parts.append(cluster + head[:, asm.shortlist_size + i, None])
        return torch.cat(parts, dim=-1)

    def _adaptive_nll(self, x: Tensor, y: Tensor) -> Tensor:
        # x (N, H), y (N,) -> per-token NLL (N,) float32; tails only see their own rows
        asm = self.adaptive
        assert asm is not None
        bounds = torch.tensor(asm.cutoffs[:-1], device=y.device)  # tail starts
        cluster = torch.bucketize(y, bounds, right=True)  # (N,) 0 = shortlist
        head_idx = torch.where(cluster == 0, y, asm.shortlist_size + cluster - 1)
        head = F.log_softmax(asm.head(x).float(), dim=-1)  # (N, shortlist + clusters)
        logp = head.gather(1, head_idx[:, None]).squeeze(1)  # (N,)
        for i, tail in enumerate(asm.tail):
            rows = (cluster == i + 1).nonzero().squeeze(1)  # (n_i,)
            if rows.numel() == 0:
                continue
            local = F.log_softmax(tail(x.index_select(0, rows)).float(), dim=-1)  # (n_i, size)
            rel = (y.index_select(0, rows) - asm.cutoffs[i])[:, None]  # (n_i, 1)
            logp = logp.index_add(0, rows, local.gather(1, rel).squeeze(1))
        return -logp

    # ----------------------------------------------------------------- state helpers
    @staticmethod
    def detach_state(state: State) -> State:
        """Cut the autograd graph (truncated BPTT)."""
        return _map_state(state, Tensor.detach)

    @staticmethod
    def select_state(state: State, index: Tensor | Sequence[int]) -> State:
        """Rows ``index`` of the batch (dim 1): (L, B, H) -> (L, len(index), H)."""
        h = state[0] if isinstance(state, tuple) else state
        idx = torch.as_tensor(index, dtype=torch.long, device=h.device)
        return _map_state(state, lambda t: t.index_select(1, idx))

    @staticmethod
    def stack_states(states: Sequence[State]) -> State:
        """Concatenate per-request states (L, b_i, H) along the batch dim -> (L, sum b_i, H)."""
        if not states:
            raise ValueError("stack_states needs at least one state, got none")
        if isinstance(states[0], tuple):
            return (torch.cat([s[0] for s in states], 1), torch.cat([s[1] for s in states], 1))
        return torch.cat(list(states), 1)  # type: ignore[arg-type]

    @staticmethod
    def split_state(state: State) -> list[State]:
        """Inverse of ``stack_states`` for batch-1 states: one (L, 1, H) state per row."""
        h = state[0] if isinstance(state, tuple) else state
        return [CharLM.select_state(state, [i]) for i in range(h.size(1))]
