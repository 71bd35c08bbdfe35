"""Tests for textgen.model.charlm (tiny sizes; runs in seconds on CPU)."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile

import pytest
import torch

from textgen.model import cpu_gru, native, recurrent
from textgen.model import state as states
from textgen.model.charlm import CharLM
from textgen.model.config import CELLS, SOFTMAXES, ModelConfig
from textgen.model.layers import Dropout

V, H, L, B, T = 7, 8, 2, 3, 5


def rnn_dtype(model: CharLM, x: torch.Tensor) -> torch.dtype | None:
    """The GEMM dtype of textgen's own loops for this call, None where a torch kernel runs."""
    return recurrent.route(model.rnn, model.config.cell, x, model.training).dtype


def layer_by_layer(model: CharLM, x: torch.Tensor, state, dtype: torch.dtype | None = None):
    """The stack one layer at a time: torch._VF per layer, or textgen's loops in ``dtype``."""
    backend = "torch_layers"
    if dtype is not None:
        backend = "cpp_lstm" if model.config.cell == "lstm" else "gru_loops"
    if state is None:
        state = model.init_state(x.size(0), x.device)
    r = recurrent.Route(backend, dtype, "test")
    return recurrent.run(model.rnn, model.config.cell, x, state, model.drop, r)


def make(cell: str = "lstm", softmax: str = "full", hidden: int = H, **kw) -> CharLM:
    torch.manual_seed(0)
    kw.setdefault("embed_dim", hidden)
    cfg = ModelConfig(V, cell=cell, hidden_size=hidden, num_layers=L, softmax=softmax, **kw)
    return CharLM(cfg)


def ids(b: int = B, t: int = T, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def state_tensors(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


ALL = [(c, s) for c in CELLS for s in SOFTMAXES]


@pytest.mark.parametrize(("cell", "softmax"), ALL)
def test_output_shapes(cell: str, softmax: str) -> None:
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
def test_init_state_zeros_and_carrying_state_changes_output(cell: str) -> None:
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
def test_log_probs_normalise(cell: str, softmax: str) -> None:
    m = make(cell, softmax)
    lp, _ = m.step_log_probs(ids())
    assert lp.dtype == torch.float32
    torch.testing.assert_close(lp.logsumexp(-1), torch.zeros(B, T), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("cutoffs", "hidden"), [((3,), 8), ((2, 4), 16), ((1, 2, 6), 64)])
def test_adaptive_loss_matches_log_prob_nll(cutoffs: tuple[int, ...], hidden: int) -> None:
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


def test_full_loss_matches_log_probs_nll() -> None:
    m = make("lstm", "full")
    feats, _ = m(ids())
    y = ids(seed=4)
    ref = -m.log_probs(feats).gather(-1, y[..., None]).mean()
    torch.testing.assert_close(m.loss(feats, y), ref)


@pytest.mark.parametrize(("cell", "softmax"), [("lstm", "full"), ("gru", "adaptive")])
def test_loss_falls_on_repeating_sequence(cell: str, softmax: str) -> None:
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


def test_bidirectional_refused() -> None:
    with pytest.raises(ValueError, match=r"bidirectional.*cannot see the future"):
        ModelConfig(V, bidirectional=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 0}, "vocab_size must be > 0, got 0"),
        ({"hidden_size": 0}, "hidden_size must be > 0, got 0"),
        ({"embed_dim": -3}, "embed_dim must be > 0, got -3"),
        ({"num_layers": 1.5}, "num_layers must be > 0, got 1.5"),
        ({"cell": "foo"}, "cell must be one of lstm, gru, rnn, got 'foo'"),
        ({"softmax": "sampled"}, "softmax must be one of full, adaptive, got 'sampled'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
        ({"forget_bias": float("nan")}, "forget_bias must be a finite number, got nan"),
        ({"tie_weights": True, "embed_dim": 4}, "tie_weights=True needs embed_dim == hidden_size"),
        ({"tie_weights": True, "softmax": "adaptive"}, "tie_weights=True needs softmax='full'"),
        ({"cutoffs": (3,)}, "cutoffs only apply to softmax='adaptive'"),
        ({"softmax": "adaptive", "cutoffs": (4, 2)}, r"cutoffs must be strictly increasing"),
        ({"softmax": "adaptive", "cutoffs": (2, 7)}, r"cutoffs .* got \(2, 7\)"),
        ({"softmax": "adaptive", "cutoffs": (0,)}, r"cutoffs .* got \(0,\)"),
        ({"softmax": "adaptive", "vocab_size": 1}, "vocab_size must be >= 2"),
        (
            {"softmax": "adaptive", "cutoffs": (2, 4)},
            "hidden_size must be >= 16 for 2 adaptive tail clusters.*got 8",
        ),
    ],
)
def test_invalid_configs_refused(kwargs: dict, message: str) -> None:
    base = {"vocab_size": V, "embed_dim": H, "hidden_size": H}
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **kwargs})


def test_default_cutoffs() -> None:
    assert ModelConfig(4700, softmax="adaptive").resolved_cutoffs() == (500, 2000)
    assert ModelConfig(1000, softmax="adaptive").resolved_cutoffs() == (500,)
    assert ModelConfig(V, softmax="adaptive").resolved_cutoffs() == (3,)
    assert ModelConfig(V, softmax="adaptive", cutoffs=[2, 5]).resolved_cutoffs() == (2, 5)


def test_config_round_trip() -> None:
    cfg = ModelConfig(V, cell="gru", hidden_size=16, softmax="adaptive", cutoffs=(2, 4))
    d = cfg.to_dict()
    assert d["cutoffs"] == [2, 4]
    assert ModelConfig.from_dict(json.loads(json.dumps(d))) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig fields: colour"):
        ModelConfig.from_dict({**d, "colour": "red"})


def test_tie_weights_shares_tensor() -> None:
    m = make(tie_weights=True)  # embed_dim == hidden_size == 8
    assert m.decoder is not None
    assert m.decoder.weight is m.embed.weight
    assert sum(p is m.embed.weight for p in m.parameters()) == 1
    assert make().decoder.weight is not make().embed.weight  # type: ignore[union-attr]


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_forget_bias_initialised(forget_bias: float) -> None:
    m = make(forget_bias=forget_bias)
    for layer in range(L):
        b_ih = getattr(m.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(m.rnn, f"bias_hh_l{layer}")
        total = b_ih[H : 2 * H] + b_hh[H : 2 * H]  # gate order i, f, g, o
        torch.testing.assert_close(total, torch.full((H,), forget_bias))


@pytest.mark.parametrize(("cell", "softmax"), ALL)
def test_bf16_autocast_forward_backward(cell: str, softmax: str) -> None:
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
def test_state_select_stack_split_round_trip(cell: str) -> None:
    m = make(cell).eval()
    _, state = m(ids())
    parts = states.split(state)
    assert len(parts) == B
    assert all(s.shape == (L, 1, H) for p in parts for s in state_tensors(p))
    for a, b in zip(state_tensors(states.stack(parts)), state_tensors(state), strict=True):
        torch.testing.assert_close(a, b)
    perm = states.select(state, [2, 0])
    for a, b in zip(state_tensors(perm), state_tensors(state), strict=True):
        torch.testing.assert_close(a, b[:, [2, 0]])
    with pytest.raises(ValueError, match="at least one state"):
        states.stack([])


@pytest.mark.parametrize("cell", CELLS)
def test_batched_step_matches_per_request_steps(cell: str) -> None:
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


def test_detach_state() -> None:
    m = make("lstm")
    _, state = m(ids())
    assert all(s.requires_grad for s in state_tensors(state))
    assert not any(s.requires_grad for s in state_tensors(states.detach(state)))


def test_forward_rejects_non_2d_ids() -> None:
    with pytest.raises(ValueError, match="ids must be"):
        make()(torch.zeros(5, dtype=torch.long))


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


@pytest.mark.parametrize("cell", CELLS)
def test_layer_by_layer_equals_the_stacked_rnn(cell: str) -> None:
    # training with dropout runs the layers one at a time (our dropout between them); with
    # dropout switched off that path must give nn.LSTM/GRU/RNN's outputs, states and grads
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=50, cell=cell, embed_dim=8, hidden_size=16,
                               num_layers=3, dropout=0.0))  # fmt: skip
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


def test_dropout_acts_between_layers_in_training_only() -> None:
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=50, embed_dim=8, hidden_size=16, num_layers=2,
                               dropout=0.5))  # fmt: skip
    ids = torch.randint(0, 50, (2, 5))
    x = model.embed(ids)
    plain = model.rnn.eval()(x)[0]  # nn.LSTM drops nothing in eval mode
    model.drop.eval()
    assert torch.equal(layer_by_layer(model, x, None)[0], plain)
    model.drop.train()
    assert not torch.equal(layer_by_layer(model, x, None)[0], plain)
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])


def _gru_case(layers: int = 3):
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=50, cell="gru", embed_dim=8, hidden_size=16,
                               num_layers=layers, dropout=0.0))  # fmt: skip
    x = model.embed(torch.randint(0, 50, (4, 7))).detach().requires_grad_()
    state = (torch.randn(layers, 4, 16) * 0.5).requires_grad_()
    return model, x, state


def _grads(out: torch.Tensor, last: torch.Tensor, model: CharLM, x, state) -> list[torch.Tensor]:
    g_out = torch.linspace(-1, 1, out.numel()).view_as(out)
    loss = (out.float() * g_out).sum() + last.float().pow(2).sum()
    return list(torch.autograd.grad(loss, [x, state, *model.rnn.parameters()]))


@pytest.fixture(params=["python", "native"])
def gru_loops(request, monkeypatch):
    """Run textgen.model.cpu_gru with its Python loops or its C++ loops (textgen/model/csrc)."""
    if request.param == "python":
        monkeypatch.setattr(cpu_gru, "cpu_gru_ops", lambda: None)
    elif native.cpu_gru_ops() is None:
        if _can_build():
            pytest.fail("a C++ compiler and ninja are here, but the GRU kernel did not build")
        pytest.skip("no C++ compiler or ninja: the C++ loops cannot be built here")
    return request.param


def _can_build() -> bool:
    return bool(
        shutil.which("c++") and (shutil.which("ninja") or importlib.util.find_spec("ninja"))
    )


def test_cpu_gru_equals_nn_gru_in_float32(gru_loops) -> None:
    # GRU training on CPU runs textgen.model.cpu_gru (hand-written backward): in float32 it must
    # give nn.GRU's outputs, final states and gradients (inputs, state, every weight)
    model, x, state = _gru_case()
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


def test_cpu_gru_bfloat16_stays_within_bf16_error(gru_loops) -> None:
    model, x, state = _gru_case(layers=2)
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


def test_native_gru_loops_equal_the_python_loops() -> None:
    # the C++ loops against the Python ones at a size where oneDNN packs the weights, with
    # states large enough to saturate gates; float32 to float rounding, bf16 to its error
    if native.cpu_gru_ops() is None:
        pytest.skip("the C++ loops cannot be built here")
    torch.manual_seed(1)
    steps, batch, n_in, h = 9, 6, 40, 64
    weights = [torch.randn(3 * h, n_in) * 0.3, torch.randn(3 * h, h) * 0.3,
               torch.randn(3 * h), torch.randn(3 * h)]  # fmt: skip
    for w in weights:
        w.requires_grad_()
    x = torch.randn(steps, batch, n_in, requires_grad=True)
    h0 = (torch.randn(batch, h) * 2).requires_grad_()
    g_out = torch.randn(steps, batch, h)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        results = []
        for use_native in (False, True):
            out, last = cpu_gru.gru_layer(x, h0, weights, dtype, native=use_native)
            loss = (out * g_out).sum() + last.pow(2).sum()
            results.append([out, last, *torch.autograd.grad(loss, [x, h0, *weights])])
        for a, b in zip(*results, strict=True):
            assert ((b - a).norm() / a.norm()).item() < tol, dtype


def test_native_build_failure_falls_back_with_the_compiler_error(tmp_path, monkeypatch, caplog):
    if not _can_build():
        pytest.skip("no C++ compiler or ninja")
    broken = tmp_path / "broken.cpp"
    broken.write_text("int f() { return undefined_name_here; }\n")
    monkeypatch.setattr(native, "SOURCES", [broken])
    monkeypatch.setenv("TEXTGEN_NATIVE_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="textgen.model.native"):
        assert native.load.__wrapped__() is False
    assert "undefined_name_here" in caplog.text and "Python loop" in caplog.text
    monkeypatch.setenv("TEXTGEN_NATIVE", "0")
    assert native.load.__wrapped__() is False  # switched off: not even tried


def test_native_cache_that_cannot_be_written_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setenv("TEXTGEN_NATIVE_CACHE", str(blocker / "cache"))
    wanted = native.build_dir()
    got = native._writable(wanted)
    assert got != wanted and got.name == wanted.name and got.is_dir()
    assert str(got).startswith(tempfile.gettempdir())


def test_cpu_gru_runs_only_when_training_with_grad() -> None:
    model, x, _ = _gru_case(layers=2)
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


def _lstm_case(layers: int = 3):
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=50, cell="lstm", embed_dim=8, hidden_size=16,
                               num_layers=layers, dropout=0.0))  # fmt: skip
    x = model.embed(torch.randint(0, 50, (4, 7))).detach().requires_grad_()
    h0 = (torch.randn(layers, 4, 16) * 0.5).requires_grad_()
    c0 = (torch.randn(layers, 4, 16) * 2).requires_grad_()
    return model, x, (h0, c0)


def _lstm_grads(out, state, model, x, state0) -> list[torch.Tensor]:
    g_out = torch.linspace(-1, 1, out.numel()).view_as(out)
    loss = (out.float() * g_out).sum() + state[0].float().pow(2).sum() + state[1].float().sum()
    return list(torch.autograd.grad(loss, [x, *state0, *model.rnn.parameters()]))


@pytest.fixture
def lstm_loops(monkeypatch):
    if native.cpu_lstm_ops() is None:
        if _can_build():
            pytest.fail("a C++ compiler and ninja are here, but the LSTM kernel did not build")
        pytest.skip("no C++ compiler or ninja: the LSTM trains through nn.LSTM's kernel")


def test_cpu_lstm_equals_nn_lstm_in_float32(lstm_loops) -> None:
    # textgen.model.cpu_lstm (LSTM training on CPU under bf16 autocast) in float32 must give
    # nn.LSTM's outputs, final (h, c) and gradients (inputs, h0, c0, every weight)
    model, x, state = _lstm_case()
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


def test_cpu_lstm_bfloat16_stays_within_bf16_error(lstm_loops) -> None:
    model, x, state = _lstm_case(layers=2)
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


def test_lstm_without_the_kernels_trains_through_nn_lstm(monkeypatch) -> None:
    model, x, _ = _lstm_case(layers=2)
    monkeypatch.setattr(recurrent, "cpu_lstm_ops", lambda: None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert rnn_dtype(model, x) is None
