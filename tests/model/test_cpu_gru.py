"""textgen.model.cpu_gru: the GRU layer with a hand-written backward, Python or C++ loops."""

from __future__ import annotations

import pytest
import torch

from textgen.model import cpu_gru, native
from textgen.model.charlm import CharLM


def _grads(out: torch.Tensor, last: torch.Tensor, model: CharLM, x, state) -> list[torch.Tensor]:
    g_out = torch.linspace(-1, 1, out.numel()).view_as(out)
    loss = (out.float() * g_out).sum() + last.float().pow(2).sum()
    return list(torch.autograd.grad(loss, [x, state, *model.rnn.parameters()]))


@pytest.fixture(params=["python", "native"])
def gru_loops(request, monkeypatch, can_build):
    """Run textgen.model.cpu_gru with its Python loops or its C++ loops (textgen/model/csrc)."""
    if request.param == "python":
        monkeypatch.setattr(cpu_gru, "cpu_gru_ops", lambda: None)
    elif native.cpu_gru_ops() is None:
        if can_build:
            pytest.fail("a C++ compiler and ninja are here, but the GRU kernel did not build")
        pytest.skip("no C++ compiler or ninja: the C++ loops cannot be built here")
    return request.param


def test_cpu_gru_equals_nn_gru_in_float32(gru_loops, rnn_dtype, layer_by_layer, gru_case) -> None:
    # GRU training on CPU runs textgen.model.cpu_gru (hand-written backward): in float32 it must
    # give nn.GRU's outputs, final states and gradients (inputs, state, every weight)
    model, x, state = gru_case()
    assert rnn_dtype(model, x) == torch.float32
    out_a, st_a = model.rnn(x, state)
    out_b, st_b = layer_by_layer(model, x, state, torch.float32)
    assert out_b.shape == out_a.shape and st_b.shape == st_a.shape
    torch.testing.assert_close(out_b, out_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(st_b, st_a, atol=1e-5, rtol=1e-5)
    ga = _grads(out_a, st_a, model, x, state)
    gb = _grads(out_b, st_b, model, x, state)
    assert len(ga) == 2 + 4 * 3
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_cpu_gru_bfloat16_stays_within_bf16_error(
    gru_loops, rnn_dtype, layer_by_layer, gru_case
) -> None:
    model, x, state = gru_case(layers=2)
    out_a, st_a = model.rnn(x, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rnn_dtype(model, x) == torch.bfloat16
        out_b, st_b = layer_by_layer(model, x, state, torch.bfloat16)
    assert out_b.dtype == torch.float32  # gate maths and state stay in float32
    ga = _grads(out_a, st_a, model, x, state)
    gb = _grads(out_b, st_b, model, x, state)
    for a, b in [(out_a, out_b), (st_a, st_b), *zip(ga, gb, strict=True)]:
        assert b.dtype == a.dtype
        assert ((b - a).norm() / a.norm()).item() < 2e-2
