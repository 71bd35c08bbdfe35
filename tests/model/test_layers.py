"""textgen.model.layers: the cheaper CPU Dropout and the float32 adaptive softmax."""

from __future__ import annotations

import pytest
import torch

from textgen.model.layers import Dropout


@pytest.mark.parametrize(("cutoffs", "hidden"), [((3,), 8), ((2, 4), 16), ((1, 2, 6), 64)])
def test_adaptive_loss_matches_log_prob_nll(
    cutoffs: tuple[int, ...], hidden: int, make, ids, sizes
) -> None:
    V = sizes.V
    m = make("gru", "adaptive", hidden=hidden, cutoffs=cutoffs)
    feats, _ = m(ids(4, 6))
    y = ids(4, 6, seed=3)
    assert m.adaptive is not None
    ref_lp = m.adaptive.log_prob(feats.reshape(-1, hidden))  # torch's own full distribution
    ref = -ref_lp.gather(1, y.reshape(-1, 1)).mean()
    torch.testing.assert_close(m.loss(feats, y), ref)
    torch.testing.assert_close(m.log_probs(feats).reshape(-1, V), ref_lp)
    native = m.adaptive(feats.reshape(-1, hidden), y.reshape(-1)).loss
    torch.testing.assert_close(m.loss(feats, y), native)


@pytest.mark.parametrize("p", [0.1, 0.4])
def test_dropout_drops_p_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    drop = Dropout(p)
    x = torch.ones(1000, 1000)
    y = drop(x)
    zeros = (y == 0).float().mean().item()
    assert abs(zeros - p) < 0.003  # 1e6 draws: the standard error is <= 0.0005
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / (1 - p), rel=1e-4)]
    assert abs(y.mean().item() - 1.0) < 0.006
    # neighbouring elements (bits of the same 64-bit draw) are independent
    a, b = (y.view(-1, 4)[:, :2] == 0).float().unbind(1)
    assert abs((a * b).mean().item() - p * p) < 0.003


def test_dropout_grad_is_the_mask_and_eval_is_identity() -> None:
    torch.manual_seed(1)
    drop = Dropout(0.3)
    x = torch.randn(64, 33, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    mask = (y != 0).float() / 0.7
    assert torch.allclose(x.grad, mask) and torch.allclose(y, x * mask)  # d(x * mask)/dx
    drop.eval()
    assert drop(x) is x
    assert Dropout(0.0).train()(x) is x


def test_dropout_follows_the_seed_and_bf16() -> None:
    drop = Dropout(0.2)
    x = torch.randn(8, 100, dtype=torch.bfloat16)
    torch.manual_seed(5)
    a = drop(x)
    torch.manual_seed(5)
    b = drop(x)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
    assert not torch.equal(a, drop(x))
    with pytest.raises(ValueError, match="dropout must be in"):
        Dropout(1.0)


def test_locked_dropout_shares_one_mask_across_time() -> None:
    torch.manual_seed(2)
    drop = Dropout(0.4, locked=True)
    x = torch.ones(64, 50, 32, requires_grad=True)  # (B, T, D)
    y = drop(x)
    assert torch.equal(y, y[:, :1].expand_as(y))  # every step has its sequence's mask
    zeros = (y[:, 0] == 0).float().mean().item()
    assert abs(zeros - 0.4) < 0.04  # 2,048 draws
    assert not torch.equal(y[0, 0], y[1, 0])  # masks differ between sequences
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the mask
    assert drop.eval()(x) is x
    # a 2-D input has no time axis: one draw per element, as without `locked`
    flat = Dropout(0.4, locked=True).train()(torch.ones(200, 50))
    assert not torch.equal(flat, flat[:1].expand_as(flat))
