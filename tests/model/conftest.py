"""Fixtures for the model tests: tiny CharLMs, their inputs and states, the recurrent backends."""

from __future__ import annotations

import importlib.util
import shutil
from typing import NamedTuple

import pytest
import torch

from textgen.model import recurrent
from textgen.model.charlm import CharLM
from textgen.model.config import ModelConfig


class Sizes(NamedTuple):
    """vocabulary V, hidden H, layers L, batch B, time steps T of ``make`` and ``ids``."""

    V: int = 7
    H: int = 8
    L: int = 2
    B: int = 3
    T: int = 5


SIZES = Sizes()


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    """``V, H, L, B, T = sizes``: the sizes ``make`` and ``ids`` use by default."""
    return SIZES


@pytest.fixture(scope="session")
def make():
    """``make(cell="lstm", softmax="full", hidden=H, **config)``: a seeded L-layer CharLM."""

    def make(cell: str = "lstm", softmax: str = "full", hidden: int = SIZES.H, **kw) -> CharLM:
        torch.manual_seed(0)
        kw.setdefault("embed_dim", hidden)
        cfg = ModelConfig(
            SIZES.V, cell=cell, hidden_size=hidden, num_layers=SIZES.L, softmax=softmax, **kw
        )
        return CharLM(cfg)

    return make


@pytest.fixture(scope="session")
def ids():
    """``ids(b=B, t=T, seed=1)``: random token ids (b, t) below V."""

    def ids(b: int = SIZES.B, t: int = SIZES.T, seed: int = 1) -> torch.Tensor:
        return torch.randint(0, SIZES.V, (b, t), generator=torch.Generator().manual_seed(seed))

    return ids


@pytest.fixture(scope="session")
def state_tensors():
    """``state_tensors(state)``: [h, c] of an LSTM state, [h] of a GRU/RNN one."""
    return lambda state: list(state) if isinstance(state, tuple) else [state]


@pytest.fixture(scope="session")
def rnn_dtype():
    """``rnn_dtype(model, x)``: the GEMM dtype of textgen's own loops for this call, None where
    a torch kernel runs."""

    def rnn_dtype(model: CharLM, x: torch.Tensor) -> torch.dtype | None:
        return recurrent.route(model.rnn, model.config.cell, x, model.training).dtype

    return rnn_dtype


@pytest.fixture(scope="session")
def layer_by_layer():
    """``layer_by_layer(model, x, state, dtype=None)``: the stack one layer at a time, through
    torch._VF per layer (dtype None) or textgen's loops in ``dtype``."""

    def layer_by_layer(model: CharLM, x: torch.Tensor, state, dtype: torch.dtype | None = None):
        backend = "torch_layers"
        if dtype is not None:
            backend = "cpp_lstm" if model.config.cell == "lstm" else "gru_loops"
        if state is None:
            state = model.init_state(x.size(0), x.device)
        r = recurrent.Route(backend, dtype, "test")
        return recurrent.run(model.rnn, model.config.cell, x, state, model.drop, r)

    return layer_by_layer


@pytest.fixture(scope="session")
def can_build() -> bool:
    """Whether a C++ compiler and ninja are here (the C++ loops should then build)."""
    return bool(
        shutil.which("c++") and (shutil.which("ninja") or importlib.util.find_spec("ninja"))
    )


def _rnn_model_and_input(cell: str, layers: int) -> tuple[CharLM, torch.Tensor]:
    """A 16-wide CharLM without dropout (seeded) and embedded inputs (4, 7, 8) requiring grad."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=50, cell=cell, embed_dim=8, hidden_size=16, num_layers=layers, dropout=0.0
    )
    model = CharLM(cfg)
    x = model.embed(torch.randint(0, 50, (4, 7))).detach().requires_grad_()
    return model, x


@pytest.fixture(scope="session")
def gru_case():
    """``gru_case(layers=3)`` -> (model, x, state): a 16-wide GRU CharLM without dropout,
    embedded inputs (4, 7, 8) and a random state, both requiring grad."""

    def gru_case(layers: int = 3):
        model, x = _rnn_model_and_input("gru", layers)
        state = (torch.randn(layers, 4, 16) * 0.5).requires_grad_()
        return model, x, state

    return gru_case


@pytest.fixture(scope="session")
def lstm_case():
    """``lstm_case(layers=3)`` -> (model, x, (h0, c0)): as ``gru_case``, for an LSTM."""

    def lstm_case(layers: int = 3):
        model, x = _rnn_model_and_input("lstm", layers)
        h0 = (torch.randn(layers, 4, 16) * 0.5).requires_grad_()
        c0 = (torch.randn(layers, 4, 16) * 2).requires_grad_()
        return model, x, (h0, c0)

    return lstm_case
