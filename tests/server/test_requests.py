"""The request models: bounds shared with the core, 422s naming field and value, fuzzing."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from textgen.inference.limits import BOUNDS
from textgen.inference.sampling import GenerationConfig
from textgen.server.requests import CompletionRequest, GenerateRequest, request_models, to_config
from textgen.server.settings import Settings


def _number_schema(prop: dict) -> dict:
    """The number branch of a property (``int | None`` is an anyOf)."""
    return next(s for s in prop.get("anyOf", [prop]) if s.get("type") in ("integer", "number"))


def test_http_bounds_are_the_core_bounds(client):
    """Every request field that sets a GenerationConfig field publishes that field's bounds
    (the server's own limit where it is lower), so HTTP and the core cannot disagree."""
    limits = {"max_new_tokens": 1000, "n": 8, "best_of": 8}  # the client fixture server: defaults
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    reached = set()
    for model in (GenerateRequest, CompletionRequest):
        props = schemas[model.__name__]["properties"]
        for field in model.model_fields:
            core = model.CORE_NAMES.get(field, field)
            if core not in BOUNDS:
                continue
            bound, schema = BOUNDS[core], _number_schema(props[field])
            where = (model.__name__, field, schema)
            assert schema.get("exclusiveMinimum" if bound.low_open else "minimum") == bound.low, (
                where
            )
            high = min(h for h in (bound.high, limits.get(core)) if h is not None)
            assert schema["maximum"] == high, where
            reached.add(core)
    assert reached == set(BOUNDS)  # every core bound is reachable over HTTP


def test_a_request_becomes_the_config_it_asks_for(ckpt):
    gen, comp = request_models(Settings(checkpoint=str(ckpt)))
    body = gen(prompt="中国", max_new_tokens=5, temperature=0.5, top_k=3, stop=["。"], seed=2)
    assert to_config(body) == GenerationConfig(
        max_new_tokens=5, temperature=0.5, top_k=3, stop=("。",), seed=2
    )
    body = comp(prompt=["中国"], max_tokens=7, logprobs=2, stop="，", repetition_penalty=1.5)
    assert to_config(body) == GenerationConfig(
        max_new_tokens=7, logprobs=True, top_logprobs=2, stop=("，",), repetition_penalty=1.5
    )
    assert to_config(comp(prompt="中国", logprobs=0)).logprobs is True  # OpenAI: 0 alternatives
    assert to_config(comp(prompt="中国")).wants_logprobs is False


@pytest.mark.parametrize(
    ("body", "field", "shown"),
    [
        ({"temperature": -1}, "temperature", "-1"),
        ({"temperature": 2.5}, "temperature", "2.5"),
        ({"top_p": 0}, "top_p", "0"),
        ({"top_k": -1}, "top_k", "-1"),
        ({"n": 9}, "n", "9"),
        ({"max_new_tokens": -1}, "max_new_tokens", "-1"),
        ({"max_new_tokens": 100000}, "max_new_tokens", "100000"),
        ({"repetition_penalty": 0.5}, "repetition_penalty", "0.5"),
        ({"repetition_penalty": 5.5}, "repetition_penalty", "5.5"),
        ({"seed": -3}, "seed", "-3"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "["),
        ({"temprature": 1}, "temprature", "1"),
        ({"max_new_tokens": "5"}, "max_new_tokens", "'5'"),
        ({"stream": "yes"}, "stream", "'yes'"),
        ({"prompt": ""}, "prompt", "''"),
        ({"prompt": "长" * 101}, "prompt", "'长长"),
        ({"prompt": "中\x00国"}, "prompt", "x00"),
        ({"script": "tw"}, "script", "'tw'"),
    ],
)
def test_invalid_values_get_422_naming_field_and_value(client, body, field, shown):
    r = client.post("/v1/generate", json={"prompt": "中国", **body})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"].startswith(field) and field in err["message"] and shown in err["message"]


MODEL_DEPENDENT = {
    *("regex", "choice", "form", "acrostic", "logit_bias", "best_of", "echo"),
    *("guided_regex", "guided_choice"),
}


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("path", ["/v1/generate", "/v1/completions"])
def test_schema_fuzz(small_client, fuzz_auth, path, mode):
    """Schema-valid bodies get 200 and a schema-valid answer; invalid ones 4xx, never 500.
    The server has API keys on; the fuzzer sends one."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", small_client.app)
    op = schema[path]["POST"]
    strategy = op.as_strategy(generation_mode=schemathesis.GenerationMode(mode))

    examples = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # `make fuzz` runs many more
    statuses: Counter[int] = Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        r = case.call(headers=fuzz_auth)
        statuses[r.status_code] += 1
        if mode == "positive":
            # the schema cannot say which characters a model has or which fields exclude each
            # other: those 422s must name one of the directed fields
            if r.status_code == 422 and r.json()["error"]["param"] in MODEL_DEPENDENT:
                return  # a documented 422 (ErrorResponse), but not "schema-valid accepted"
            assert r.status_code == 200, (case.body, r.text[:300])
        else:
            assert 400 <= r.status_code < 500, (case.body, r.status_code, r.text[:300])
        case.validate_response(r)  # the answer, error or not, is what the schema documents

    check()
    assert 401 not in statuses
    # shown with `pytest -s` (make fuzz, make reliability)
    print(f"\nfuzz {path} {mode}: {sum(statuses.values())} cases, statuses {dict(statuses)}")
