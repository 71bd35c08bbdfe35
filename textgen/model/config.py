"""The model's hyper-parameters: ``ModelConfig``, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from textgen.fields import opt

CELLS = ("lstm", "gru", "rnn")
ACTIVATIONS = ("tanh", "relu")  # the plain RNN's nonlinearity
SOFTMAXES = ("full", "adaptive")
DROPOUT_MASKS = ("element", "locked")
DEFAULT_CUTOFFS = (500, 2000)
ADAPTIVE_DIV_VALUE = 4.0  # tail cluster i projects to hidden_size / 4**(i+1) dims


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`CharLM`; validated on construction.

    ``forget_bias`` (LSTM only) is the *total* initial forget-gate bias: it is written to
    ``bias_ih`` and the forget slice of ``bias_hh`` is zeroed, so their sum equals it.
    ``cutoffs`` (adaptive softmax only): empty means ``(500, 2000)`` clipped to the
    vocabulary, see :meth:`resolved_cutoffs`.
    """

    vocab_size: int
    cell: str = opt("lstm", "lstm | gru | rnn (plain RNN, the baseline)")
    activation: str = opt(
        "tanh",
        "the plain RNN's nonlinearity: tanh | relu (relu does not saturate, so its gradient "
        "does not vanish, but it can explode: clipping tames it; docs/gradients.md)",
    )
    embed_dim: int = opt(256, "embedding size")
    hidden_size: int = opt(512, "recurrent hidden size")
    num_layers: int = opt(2, "recurrent layers")
    dropout: float = opt(
        0.1, "dropout on embeddings (unless --input-dropout), between layers and on outputs"
    )
    input_dropout: float = opt(
        -1.0, "dropout on the embeddings alone (-1: the same as --dropout); AWD-LSTM's dropouti"
    )
    dropout_mask: str = opt(
        "element",
        "element | locked (one mask per sequence, shared by all time steps: AWD-LSTM's variational dropout)",
    )
    embed_dropout: float = opt(
        0.0, "drop whole characters' embeddings with this probability, one draw per step"
    )
    weight_drop: float = opt(
        0.0, "DropConnect on the recurrent weights W_hh (AWD-LSTM), one mask per step"
    )
    tie_weights: bool = False
    forget_bias: float = opt(1.0, "LSTM forget-gate bias at initialisation")
    softmax: str = opt("full", "full | adaptive (faster for a ~5k vocabulary)")
    cutoffs: tuple[int, ...] = ()
    bidirectional: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
            _check_positive_int(name, getattr(self, name))
        _check_choice("cell", self.cell, CELLS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        if self.activation != "tanh" and self.cell != "rnn":
            raise ValueError(
                f"activation {self.activation!r} is for the plain RNN (--cell rnn); an "
                f"{self.cell.upper()} has its gates' own nonlinearities, got cell {self.cell!r}"
            )
        _check_choice("softmax", self.softmax, SOFTMAXES)
        _check_choice("dropout_mask", self.dropout_mask, DROPOUT_MASKS)
        for name in ("dropout", "embed_dropout", "weight_drop"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        d = self.input_dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not (d == -1 or 0 <= d < 1):
            raise ValueError(
                f"input_dropout must be in [0, 1), or -1 for the same as dropout, got {d!r}"
            )
        if not isinstance(self.forget_bias, (int, float)) or not math.isfinite(self.forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {self.forget_bias!r}")
        if self.bidirectional:
            raise ValueError(
                "bidirectional must be False, got True: a language model predicts the next "
                "character and cannot see the future, so a backward RNN would leak targets"
            )
        self._check_tying()
        self._check_cutoffs()

    def resolved_input_dropout(self) -> float:
        """The embeddings' dropout rate: ``input_dropout``, or ``dropout`` where it is -1."""
        return self.dropout if self.input_dropout == -1 else float(self.input_dropout)

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
