"""textgen.model.config: ModelConfig's validation, adaptive cutoffs, round trip."""

from __future__ import annotations

import json

import pytest

from textgen.model.config import ModelConfig


def test_bidirectional_refused(sizes) -> None:
    V = sizes.V
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
        ({"cell": "rnn", "activation": "gelu"}, "activation must be one of tanh, relu, got 'gelu'"),
        ({"activation": "relu"}, "activation 'relu' is for the plain RNN .*got cell 'lstm'"),
        ({"softmax": "sampled"}, "softmax must be one of full, adaptive, got 'sampled'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\), got -0.1"),
        ({"embed_dropout": 1.0}, r"embed_dropout must be in \[0, 1\), got 1.0"),
        ({"input_dropout": 1.0}, r"input_dropout must be in \[0, 1\), or -1 .*got 1.0"),
        ({"input_dropout": -0.5}, r"input_dropout must be in \[0, 1\), or -1 .*got -0.5"),
        ({"weight_drop": -0.2}, r"weight_drop must be in \[0, 1\), got -0.2"),
        ({"dropout_mask": "zoneout"}, "dropout_mask must be one of element, locked, got 'zoneout'"),
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
def test_invalid_configs_refused(kwargs: dict, message: str, sizes) -> None:
    V, H = sizes.V, sizes.H
    base = {"vocab_size": V, "embed_dim": H, "hidden_size": H}
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **kwargs})


def test_input_dropout_follows_dropout_unless_set(sizes) -> None:
    V = sizes.V
    assert ModelConfig(V, dropout=0.3).resolved_input_dropout() == 0.3  # -1, the default
    assert ModelConfig(V, dropout=0.3, input_dropout=0.0).resolved_input_dropout() == 0.0
    assert ModelConfig(V, dropout=0.3, input_dropout=0.1).resolved_input_dropout() == 0.1


def test_default_cutoffs(sizes) -> None:
    V = sizes.V
    assert ModelConfig(4700, softmax="adaptive").resolved_cutoffs() == (500, 2000)
    assert ModelConfig(1000, softmax="adaptive").resolved_cutoffs() == (500,)
    assert ModelConfig(V, softmax="adaptive").resolved_cutoffs() == (3,)
    assert ModelConfig(V, softmax="adaptive", cutoffs=[2, 5]).resolved_cutoffs() == (2, 5)


def test_config_round_trip(sizes) -> None:
    V = sizes.V
    cfg = ModelConfig(V, cell="gru", hidden_size=16, softmax="adaptive", cutoffs=(2, 4))
    d = cfg.to_dict()
    assert d["cutoffs"] == [2, 4]
    assert ModelConfig.from_dict(json.loads(json.dumps(d))) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig fields: colour"):
        ModelConfig.from_dict({**d, "colour": "red"})
