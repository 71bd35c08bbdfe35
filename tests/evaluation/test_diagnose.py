"""textgen.evaluation.diagnose: gradient norms through time against autograd, the decay fit, and
the JSON schema of its reports."""

import copy
import math

import pytest
import torch

from textgen.data.dataset import PreparedCorpus
from textgen.evaluation import diagnose
from textgen.evaluation import health as run_health_module
from textgen.model.charlm import CharLM

pytestmark = pytest.mark.usefixtures("one_thread")


def _windows(prepared, n=3, length=12, seed=0):
    return diagnose.sample_windows(PreparedCorpus.open(prepared).split("val"), n, length, seed)[0]


def _fused_norms(model: CharLM, windows: torch.Tensor, burn_in: int, k: int) -> torch.Tensor:
    """||d loss_T / d h_{T-k}|| the other way: h_{T-k} a fresh leaf, the rest in one fused call."""
    net = copy.deepcopy(model).double().eval()
    t_last = windows.size(1) - 2  # index of the last input token (step T)
    with torch.no_grad():
        _, state = net.rnn(net.embed(windows[:, : t_last - k + 1]), None)  # after step T-k
    h = (state[0] if isinstance(state, tuple) else state).clone().requires_grad_()
    start = (h, state[1]) if isinstance(state, tuple) else h  # LSTM: c held fixed
    out, _ = net.rnn(net.embed(windows[:, t_last - k + 1 : t_last + 1]), start)  # (B, k, H)
    loss = net.loss(out[:, -1:], windows[:, -1:].contiguous()) * windows.size(0)  # mean*B = sum
    (grad,) = torch.autograd.grad(loss, h)  # (L, B, H)
    return grad.norm(dim=-1)  # (L, B)


@pytest.mark.parametrize(
    "cell,softmax", [("lstm", "adaptive"), ("lstm", "full"), ("gru", "full"), ("rnn", "adaptive")]
)
def test_norms_match_autograd_computed_another_way(prepared, cell, softmax, tiny_model):
    torch.manual_seed(0)
    model = CharLM(tiny_model(prepared, cell=cell, num_layers=2, softmax=softmax, dropout=0.3))
    model.train()  # gradient_norms must switch dropout off itself
    burn_in, k_max = 4, 7
    windows = _windows(prepared, length=burn_in + k_max + 1)
    norms, _ = diagnose.gradient_norms(model, windows, burn_in)
    assert norms.shape == (2, 3, k_max) and norms.dtype == torch.float64
    for k in (1, 2, 5, k_max):
        other = _fused_norms(model, windows, burn_in, k)
        torch.testing.assert_close(norms[..., k - 1], other, rtol=1e-6, atol=1e-12)
    assert (norms > 0).all()


def test_fresh_plain_rnn_with_small_weights_decays_with_k(prepared, tiny_model):
    torch.manual_seed(0)
    model = CharLM(tiny_model(prepared, cell="rnn", num_layers=1, hidden_size=16))
    with torch.no_grad():  # small recurrent weights: spectral norm 0.5
        w = model.rnn.weight_hh_l0
        w.mul_(0.5 / torch.linalg.matrix_norm(w, ord=2))
    norms, _ = diagnose.gradient_norms(model, _windows(prepared, n=4, length=33), burn_in=8)
    ratios = norms[..., 1:] / norms[..., :-1]  # (1, B, K - 1)
    # dh_t/dh_{t-1} = diag(1 - h_t^2) W: each step back shrinks the norm by at least 0.5
    assert (ratios <= 0.5 + 1e-9).all(), ratios.max()
    layer = diagnose.summarize_layers(norms)[0]
    fit = layer["fit"]
    assert fit["decay_per_step"] < 0.5 and fit["half_life_steps"] < 1.0
    assert fit["doubling_steps"] is None and fit["r2"] > 0.9 and fit["points"] == 24
    assert layer["geomean"][-1] <= layer["geomean"][0] * 0.5**23 * (1 + 1e-9)


def test_fit_decay_recovers_a_known_rate():
    lags = list(range(1, 41))
    fit = diagnose.fit_decay(lags, [3.0 * 0.8**k for k in lags])
    assert fit["decay_per_step"] == pytest.approx(0.8)
    assert fit["half_life_steps"] == pytest.approx(math.log(2) / -math.log(0.8))
    assert fit["r2"] == pytest.approx(1.0)
    grow = diagnose.fit_decay(lags, [1.1**k if k < 30 else math.inf for k in lags])
    assert grow["decay_per_step"] == pytest.approx(1.1) and grow["half_life_steps"] is None
    assert grow["points"] == 29 and grow["doubling_steps"] == pytest.approx(
        math.log(2) / math.log(1.1)
    )


GRADIENT_KEYS = {"schema_version", "kind", "quantity", "settings", "lags", "models"}
SETTINGS_KEYS = {"data", "split", "k", "batch", "burn_in", "seed", "starts"}
MODEL_KEYS = {
    "label",
    "source",
    "cell",
    "forget_bias",
    "embed_dim",
    "hidden_size",
    "num_layers",
    "trained_steps",
    "final_step_bpc",
    "layers",
}
LAYER_KEYS = {"layer", "mean", "geomean", "fit"}
FIT_KEYS = {"on", "slope", "decay_per_step", "half_life_steps", "doubling_steps", "r2", "points"}
HEALTH_KEYS = {"schema_version", "kind", "runs"}
RUN_KEYS = {
    "label",
    "path",
    "cell",
    "lr",
    "clip",
    "steps",
    "skipped",
    "clip_rate",
    "stopped_non_finite",
    "final_val_bpc",
    "grad_norm",
    "histogram",
    "rolling_window",
    "series",
}
SERIES_KEYS = {"step", "loss_bpc", "grad_norm_median", "grad_norm_max", "clip_rate", "skipped"}


def test_json_schema_is_stable(tmp_path, prepared, runs, tiny_model, strict_load):
    models = []
    for cell, fb in (("lstm", 0.0), ("gru", 1.0)):
        m = diagnose.fresh_model(tiny_model(prepared, cell=cell, forget_bias=fb), seed=1)
        models.append((m, diagnose.describe(m, diagnose.model_label(m.config), "fresh", None)))
    tokens = PreparedCorpus.open(prepared).split("val")
    report = diagnose.gradient_report(models, tokens, k=5, batch=2, burn_in=3, data="x")
    doc = strict_load(diagnose.write_json(report, tmp_path / "g.json"))
    assert doc["schema_version"] == 1 and doc["kind"] == "gradient_norms"
    assert set(doc) == GRADIENT_KEYS and set(doc["settings"]) == SETTINGS_KEYS
    assert doc["lags"] == [1, 2, 3, 4, 5]
    assert [m["label"] for m in doc["models"]] == ["LSTM fb=0.0 (fresh)", "GRU (fresh)"]
    for m in doc["models"]:
        assert set(m) == MODEL_KEYS and len(m["layers"]) == 1
        layer = m["layers"][0]
        assert set(layer) == LAYER_KEYS and set(layer["fit"]) == FIT_KEYS
        assert len(layer["mean"]) == len(layer["geomean"]) == 5
    assert doc["models"][1]["forget_bias"] is None

    health = run_health_module.training_health([runs / "lstm", runs / "rnn"])
    doc = strict_load(diagnose.write_json(health, tmp_path / "h.json"))
    assert set(doc) == HEALTH_KEYS and doc["schema_version"] == 1
    for run in doc["runs"]:
        assert set(run) == RUN_KEYS and set(run["series"]) == SERIES_KEYS
        assert set(run["grad_norm"]) == {"median", "p90", "p99", "max"}
        assert sum(run["histogram"]["counts"]) == run["steps"] == 12
    assert doc["runs"][0]["label"] == "LSTM fb=1.0 lr=0.003 clip=1.0"
