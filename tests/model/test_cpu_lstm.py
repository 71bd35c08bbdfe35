"""textgen.model.cpu_lstm: the LSTM layer whose time loops run in C++ (bf16 CPU training)."""

from __future__ import annotations

import pytest
import torch

from textgen.model import native


def _lstm_grads(out, state, model, x, state0) -> list[torch.Tensor]:
    g_out = torch.linspace(-1, 1, out.numel()).view_as(out)
    loss = (out.float() * g_out).sum() + state[0].float().pow(2).sum() + state[1].float().sum()
    return list(torch.autograd.grad(loss, [x, *state0, *model.rnn.parameters()]))


@pytest.fixture
def lstm_loops(monkeypatch, can_build):
    if native.cpu_lstm_ops() is None:
        if can_build:
            pytest.fail("a C++ compiler and ninja are here, but the LSTM kernel did not build")
        pytest.skip("no C++ compiler or ninja: the LSTM trains through nn.LSTM's kernel")


def test_cpu_lstm_equals_nn_lstm_in_float32(
    lstm_loops, rnn_dtype, layer_by_layer, lstm_case
) -> None:
    # textgen.model.cpu_lstm (LSTM training on CPU under bf16 autocast) in float32 must give
    # nn.LSTM's outputs, final (h, c) and gradients (inputs, h0, c0, every weight)
    model, x, state = lstm_case()
    assert rnn_dtype(model, x) is None  # float32 training keeps nn.LSTM (it was faster)
    out_a, st_a = model.rnn(x, state)
    out_b, st_b = layer_by_layer(model, x, state, torch.float32)
    torch.testing.assert_close(out_b, out_a, atol=1e-5, rtol=1e-5)
    for a, b in zip(st_a, st_b, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    ga = _lstm_grads(out_a, st_a, model, x, state)
    gb = _lstm_grads(out_b, st_b, model, x, state)
    assert len(ga) == 3 + 4 * 3
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_cpu_lstm_bfloat16_stays_within_bf16_error(
    lstm_loops, rnn_dtype, layer_by_layer, lstm_case
) -> None:
    model, x, state = lstm_case(layers=2)
    out_a, st_a = model.rnn(x, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rnn_dtype(model, x) == torch.bfloat16
        out_b, st_b = layer_by_layer(model, x, state, torch.bfloat16)
    assert out_b.dtype == torch.float32  # gate maths and state stay in float32
    ga = _lstm_grads(out_a, st_a, model, x, state)
    gb = _lstm_grads(out_b, st_b, model, x, state)
    for a, b in [(out_a, out_b), *zip(st_a, st_b, strict=True), *zip(ga, gb, strict=True)]:
        assert b.dtype == a.dtype
        assert ((b - a).norm() / a.norm()).item() < 2e-2
