"""textgen.model.charlm: shapes, state, the two heads, training, bf16 autocast (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from textgen.model import state as states
from textgen.model.charlm import CharLM
from textgen.model.config import CELLS, SOFTMAXES, ModelConfig

ALL = [(c, s) for c in CELLS for s in SOFTMAXES]


@pytest.mark.parametrize(("cell", "softmax"), ALL)
def test_output_shapes(cell: str, softmax: str, make, ids, state_tensors, sizes) -> None:
    V, H, L, B, T = sizes
    m = make(cell, softmax)
    feats, state = m(ids())
    assert feats.shape == (B, T, H)
    assert m.logits(feats).shape == (B, T, V)
    assert m.log_probs(feats).shape == (B, T, V)
    assert m.loss(feats, ids(seed=2)).shape == ()
    lp, _ = m.step_log_probs(ids())
    assert lp.shape == (B, T, V)
    assert isinstance(state, tuple) == (cell == "lstm")
    for s in state_tensors(state):
        assert s.shape == (L, B, H)


@pytest.mark.parametrize("cell", CELLS)
def test_init_state_zeros_and_carrying_state_changes_output(
    cell: str, make, ids, state_tensors, sizes
) -> None:
    H, L, B = sizes.H, sizes.L, sizes.B
    m = make(cell).eval()
    zero = m.init_state(B)
    assert all(s.shape == (L, B, H) and not s.any() for s in state_tensors(zero))
    x = ids()
    f_none, state = m(x)
    f_zero, _ = m(x, zero)
    torch.testing.assert_close(f_none, f_zero)
    f_carried, _ = m(x, state)
    assert not torch.allclose(f_none, f_carried)


@pytest.mark.parametrize(("cell", "softmax"), ALL)
def test_log_probs_normalise(cell: str, softmax: str, make, ids, sizes) -> None:
    B, T = sizes.B, sizes.T
    m = make(cell, softmax)
    lp, _ = m.step_log_probs(ids())
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(B, T), atol=1e-5, rtol=0)


def test_full_loss_matches_log_probs_nll(make, ids) -> None:
    m = make("lstm", "full")
    feats, _ = m(ids())
    y = ids(seed=4)
    ref = -m.log_probs(feats).gather(-1, y[..., None]).mean()
    torch.testing.assert_close(m.loss(feats, y), ref)


@pytest.mark.parametrize(("cell", "softmax"), [("lstm", "full"), ("gru", "adaptive")])
def test_loss_falls_on_repeating_sequence(cell: str, softmax: str, make, sizes) -> None:
    V = sizes.V
    m = make(cell, softmax, dropout=0.0)  # adaptive: default cutoffs (3,) for V=7
    seq = torch.arange(V).repeat(8)[None, :]  # (1, 56) 0..6 0..6 ...
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    first = None
    for _ in range(100):
        feats, _ = m(x)
        loss = m.loss(feats, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.2 * first
    assert loss.item() < 0.3


def test_tie_weights_shares_tensor(make) -> None:
    m = make(tie_weights=True)  # embed_dim == hidden_size == 8
    assert m.decoder is not None
    assert m.decoder.weight is m.embed.weight
    assert sum(p is m.embed.weight for p in m.parameters()) == 1
    assert make().decoder.weight is not make().embed.weight  # type: ignore[union-attr]


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_forget_bias_initialised(forget_bias: float, make, sizes) -> None:
    H, L = sizes.H, sizes.L
    m = make(forget_bias=forget_bias)
    for layer in range(L):
        b_ih = getattr(m.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(m.rnn, f"bias_hh_l{layer}")
        total = b_ih[H : 2 * H] + b_hh[H : 2 * H]  # gate order i, f, g, o
        torch.testing.assert_close(total, torch.full((H,), forget_bias))


@pytest.mark.parametrize(("cell", "softmax"), ALL)
def test_bf16_autocast_forward_backward(cell: str, softmax: str, make, ids, state_tensors) -> None:
    # gru + adaptive used to fail in AdaptiveLogSoftmaxWithLoss.forward (index_copy_ dtype).
    m = make(cell, softmax)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, state = m(ids())
        loss = m.loss(feats, ids(seed=5))
        lp = m.log_probs(feats)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert lp.dtype == torch.float32
    assert all(s.dtype == torch.float32 for s in state_tensors(state))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    m(ids(), state)  # state from autocast is reusable outside autocast


@pytest.mark.parametrize("cell", CELLS)
def test_batched_step_matches_per_request_steps(cell: str, make, ids, state_tensors) -> None:
    m = make(cell, "adaptive").eval()
    _, state = m(ids())
    nxt = ids(t=1, seed=6)  # (B, 1)
    batched, batched_state = m.step_log_probs(nxt, states.stack(states.split(state)))
    for i, s in enumerate(states.split(state)):
        single, single_state = m.step_log_probs(nxt[i : i + 1], s)
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=1e-5)
        for a, b in zip(
            state_tensors(states.select(batched_state, [i])),
            state_tensors(single_state),
            strict=True,
        ):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_forward_rejects_non_2d_ids(make) -> None:
    with pytest.raises(ValueError, match="ids must be"):
        make()(torch.zeros(5, dtype=torch.long))


def test_embedding_dropout_drops_whole_characters_in_training_only() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=20, embed_dim=6, hidden_size=8, num_layers=1, dropout=0.0, embed_dropout=0.5
    )
    model = CharLM(cfg).train()
    ids = torch.arange(20).repeat(3, 4)  # every character at 12 positions
    torch.manual_seed(1)
    x = model._embed(ids)  # (3, 80, 6)
    w = model.embed.weight
    dropped = set()
    for pos, i in enumerate(ids[0].tolist()):
        row = x[0, pos]
        if torch.count_nonzero(row) == 0:
            dropped.add(i)
        else:
            torch.testing.assert_close(row, w[i] * 2)  # kept rows scaled by 1 / (1 - p)
    assert 0 < len(dropped) < 20
    for b in range(3):  # one draw per step: a dropped character is gone everywhere
        for pos, i in enumerate(ids[b].tolist()):
            assert (torch.count_nonzero(x[b, pos]) == 0) == (i in dropped)
    model.eval()
    assert torch.equal(model._embed(ids), model.embed(ids))


@pytest.mark.parametrize(("dropout", "input_dropout"), [(0.0, 0.5), (0.5, 0.0), (0.5, -1.0)])
def test_input_dropout_is_the_embeddings_rate_and_dropout_the_outputs(
    dropout: float, input_dropout: float
) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=20, embed_dim=64, hidden_size=64, num_layers=1, dropout=dropout,
        input_dropout=input_dropout, softmax="full",
    )  # fmt: skip
    model = CharLM(cfg).train()
    seen: dict[str, Tensor] = {}
    for name in ("drop_in", "drop"):
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: seen.update({n: o}))
    model(torch.randint(0, 20, (4, 50)))
    zeros = {name: (t == 0).float().mean().item() for name, t in seen.items()}
    want_in = dropout if input_dropout == -1 else input_dropout
    for name, rate in (("drop_in", want_in), ("drop", dropout)):
        assert abs(zeros[name] - rate) < 0.1, (name, zeros)
    model.eval()
    model(torch.randint(0, 20, (4, 50)))
    assert (seen["drop_in"] == 0).sum() == 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16: the C++ LSTM loops
def test_weight_drop_masks_w_hh_only_and_only_in_training(precision: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=30,
        embed_dim=16,
        hidden_size=32,
        num_layers=1,
        dropout=0.0,
        weight_drop=0.5,
        softmax="full",
    )
    model = CharLM(cfg).train()
    plain = CharLM(ModelConfig(**{**cfg.to_dict(), "weight_drop": 0.0})).train()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 30, (4, 12), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        torch.manual_seed(2)
        feats, _ = model(ids)
        model.loss(feats, ids).backward()
    g_hh, g_ih = model.rnn.weight_hh_l0.grad, model.rnn.weight_ih_l0.grad
    zeros = (g_hh == 0).float().mean().item()
    assert 0.4 < zeros < 0.6  # 4,096 weights, half of them masked for the whole step
    assert (g_ih == 0).float().mean().item() < 0.05  # W_ih is not masked
    model.eval()
    plain.eval()
    with torch.no_grad():  # evaluation uses the full W_hh: the model without weight drop
        assert torch.equal(model(ids)[0], plain(ids)[0])
