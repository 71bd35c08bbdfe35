"""textgen.model.recurrent: which backend runs the stack, and that each computes nn.LSTM/GRU/RNN's
results (layer by layer with dropout between layers, the nn module when the kernels are missing)."""

from __future__ import annotations

import pytest
import torch

from textgen.model import recurrent
from textgen.model.charlm import CharLM
from textgen.model.config import CELLS, ModelConfig


@pytest.mark.parametrize("cell", CELLS)
def test_layer_by_layer_equals_the_stacked_rnn(cell: str, layer_by_layer) -> None:
    # training with dropout runs the layers one at a time (our dropout between them); with
    # dropout switched off that path must give nn.LSTM/GRU/RNN's outputs, states and grads
    torch.manual_seed(0)
    model = CharLM(
        ModelConfig(
            vocab_size=50, cell=cell, embed_dim=8, hidden_size=16, num_layers=3, dropout=0.0
        )
    )
    ids = torch.randint(0, 50, (4, 7))
    state = model.init_state(4)
    state = tuple(torch.randn_like(s) for s in state) if cell == "lstm" else torch.randn_like(state)
    x = model.embed(ids)
    out_a, st_a = model.rnn(x, state)
    out_b, st_b = layer_by_layer(model, x, state)
    assert torch.equal(out_a, out_b)
    pairs = zip(st_a, st_b, strict=True) if cell == "lstm" else [(st_a, st_b)]
    assert all(torch.equal(a, b) for a, b in pairs)
    ga = torch.autograd.grad(out_a.sum(), model.rnn.weight_hh_l0)[0]
    gb = torch.autograd.grad(out_b.sum(), model.rnn.weight_hh_l0)[0]
    assert torch.allclose(ga, gb, atol=1e-6)


def test_relu_rnn_layer_by_layer_keeps_its_relu(layer_by_layer) -> None:
    # the layer-by-layer path (dropout between layers, DropConnect) must run ReLU, not tanh
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=50,
        cell="rnn",
        activation="relu",
        embed_dim=8,
        hidden_size=16,
        num_layers=2,
        dropout=0.0,
    )
    model = CharLM(config)
    assert model.rnn.nonlinearity == "relu"
    x, state = model.embed(torch.randint(0, 50, (4, 7))), torch.randn(2, 4, 16)
    out_a, st_a = model.rnn(x, state)
    out_b, st_b = layer_by_layer(model, x, state)
    assert torch.equal(out_a, out_b) and torch.equal(st_a, st_b)
    assert bool((out_a >= 0).all()) and float(out_a.detach().max()) > 1.0  # ReLU: not tanh


def test_dropout_acts_between_layers_in_training_only(layer_by_layer) -> None:
    torch.manual_seed(0)
    model = CharLM(
        ModelConfig(vocab_size=50, embed_dim=8, hidden_size=16, num_layers=2, dropout=0.5)
    )
    ids = torch.randint(0, 50, (2, 5))
    x = model.embed(ids)
    plain = model.rnn.eval()(x)[0]  # nn.LSTM drops nothing in eval mode
    model.drop.eval()
    assert torch.equal(layer_by_layer(model, x, None)[0], plain)
    model.drop.train()
    assert not torch.equal(layer_by_layer(model, x, None)[0], plain)
    # in eval mode the whole model (dropout on the embedding, between the layers and on the
    # output) drops nothing: the stacked nn.LSTM path, and a dropout-0 model with the same
    # weights, exactly; in training mode it drops
    model.eval()
    out = model(ids)[0]
    assert torch.equal(out, plain)
    no_dropout = CharLM(ModelConfig(vocab_size=50, embed_dim=8, hidden_size=16, num_layers=2))
    no_dropout.load_state_dict(model.state_dict())
    assert torch.equal(no_dropout.eval()(ids)[0], out)
    model.train()
    assert not torch.equal(model(ids)[0], out)


def test_cpu_gru_runs_only_when_training_with_grad(rnn_dtype, gru_case) -> None:
    model, x, _ = gru_case(layers=2)
    ids = torch.randint(0, 50, (2, 5))
    assert rnn_dtype(model, x) == torch.float32
    with torch.no_grad():
        assert rnn_dtype(model, x) is None
    model.eval()
    assert rnn_dtype(model, x) is None
    with torch.autocast("cpu", dtype=torch.float16):
        model.train()
        assert rnn_dtype(model, x) is None  # fp16 autocast: nn.GRU as before
    # in training, the whole model (embedding, GRU stack, head) matches the nn.GRU path
    model.train()
    out_train, st_train = model(ids)
    model.eval()
    out_eval, st_eval = model(ids)
    torch.testing.assert_close(out_train, out_eval, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st_train, st_eval, atol=1e-5, rtol=1e-5)
    rnn = CharLM(ModelConfig(vocab_size=50, cell="rnn", embed_dim=8, hidden_size=16))
    assert rnn_dtype(rnn, x) is None


def test_lstm_without_the_kernels_trains_through_nn_lstm(monkeypatch, lstm_case) -> None:
    # where the C++ loops cannot be built, bf16 LSTM training on CPU runs nn.LSTM itself: the
    # model's features, final state and gradients are exactly those of model.rnn called directly
    model, _, _ = lstm_case(layers=2)
    monkeypatch.setattr(recurrent, "cpu_lstm_ops", lambda: None)

    def no_loops(*args, **kw):
        raise AssertionError("the C++ LSTM loops ran although they are not built")

    monkeypatch.setattr(recurrent, "lstm_layer", no_loops)
    ids = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(2))
    weights = list(model.rnn.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = recurrent.route(model.rnn, "lstm", model.embed(ids), model.training)
        assert model.training and r.backend == "torch" and r.dtype is None
        feats, (h, c) = model(ids)
        want, (want_h, want_c) = model.rnn(model.embed(ids))
    assert feats.dtype == torch.bfloat16  # autocast reached nn.LSTM
    assert torch.equal(feats, want)
    assert torch.equal(h, want_h.float()) and torch.equal(c, want_c.float())
    got_grads = torch.autograd.grad(feats.float().pow(2).sum(), weights)
    want_grads = torch.autograd.grad(want.float().pow(2).sum(), weights)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))
