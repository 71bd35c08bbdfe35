"""The bounds table: GenerationConfig and `textgen generate` refuse what is outside it."""

from __future__ import annotations

import math
import re

import pytest

from textgen.cli.main import build_parser
from textgen.inference.limits import BOUNDS, Bound
from textgen.inference.sampling import GenerationConfig


def test_bounds_describe_and_check():
    assert Bound(0.0, 2.0).describe() == "[0, 2]" and Bound(0.0, 1.0, True).describe() == "(0, 1]"
    assert Bound(1, integer=True).describe() == ">= 1"
    assert Bound(0.0, 2.0).contains(2) and not Bound(0.0, 2.0).contains(math.inf)
    assert not Bound(0, 5, integer=True).contains(2.0) and not Bound(0.0, 1.0).contains(True)
    assert Bound(1, 5, integer=True).field(high=3) == {"ge": 1, "le": 3}
    assert Bound(0.0, 1.0, low_open=True).field() == {"gt": 0.0, "le": 1.0}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_the_config_accepts_each_bound_and_refuses_just_past_it(name):
    bound = BOUNDS[name]
    step = 1 if bound.integer else 1e-6
    if not bound.low_open:
        GenerationConfig(**{name: bound.low})
    with pytest.raises(ValueError, match=f"{name} must be .*got"):
        GenerationConfig(**{name: bound.low - (step if not bound.low_open else 0)})
    if bound.high is not None:
        GenerationConfig(**{name: bound.high})
        with pytest.raises(ValueError, match=f"{name} must be .* {re.escape(bound.describe())}"):
            GenerationConfig(**{name: bound.high + step})


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--temperature", "2.5", "temperature must be a number in [0, 2], got 2.5"),
        ("--repetition-penalty", "0.5", "repetition_penalty must be a number in [1, 5], got 0.5"),
        ("--top-p", "0", "top_p must be a number in (0, 1], got 0.0"),
        ("--top-k", "1.5", "top_k must be an integer, got '1.5'"),
        ("--n", "0", "n must be an integer >= 1, got 0"),
    ],
)
def test_generate_flags_refuse_what_the_config_refuses(capsys, flag, value, says):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["generate", "--prompt", "x", flag, value])
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_generate_flags_build_the_config():
    args = build_parser().parse_args(
        ["generate", "--prompt", "x", "--temperature", "2", "--stop", "。", "--stop", "，"]
    )
    config = GenerationConfig.from_fields(vars(args))
    assert config.temperature == 2.0 and config.stop == ("。", "，") and config.seed is None
