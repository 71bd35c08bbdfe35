"""Directed generation over HTTP: forms, regexes and choices on /v1/generate (JSON and SSE) and
/v1/completions (vLLM's names, through the official openai client), logit_bias, echo scoring,
best_of, and the 422s that name each bad field while the server keeps serving."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tests.inference.test_directed import poem_problems
from textgen.evaluation.evaluate import evaluate_ids


def test_a_poem_with_heads_over_json_and_sse(bundled_client, sse_events):
    body = {"prompt": "春天", "form": "七言绝句", "acrostic": "春夏秋冬", "seed": 3}
    r = bundled_client.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    text = r.json()["text"]
    assert r.json()["finish_reason"] == "stop" and not poem_problems(text, 4, 7, "春夏秋冬")
    with bundled_client.stream("POST", "/v1/generate", json={**body, "stream": True}) as s:
        events = sse_events(s.iter_lines())
    chunks = "".join(data["text"] for name, data in events if name == "chunk")
    assert chunks == text == events[-1][1]["text"]


def test_traditional_heads_are_converted_to_the_model_s_script(bundled_client):
    body = {"prompt": "春天", "form": "五言绝句", "acrostic": "東南西北", "seed": 1}
    r = bundled_client.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    # the answer is in the prompt's script (Simplified here), heads 东南西北 in the model's
    assert not poem_problems(r.json()["text"], 4, 5, "东南西北")


def test_openai_client_guided_regex_and_choice_through_extra_body(bundled_client):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(
        base_url="http://testserver/v1", api_key="none", http_client=bundled_client
    )
    pattern = "[0-9]{4}年[0-9]{1,2}月"
    out = client.completions.create(
        model="textgen",
        prompt="会议于",
        max_tokens=20,
        seed=1,
        extra_body={"guided_regex": pattern},
    )
    assert re.fullmatch(pattern, out.choices[0].text) and out.choices[0].finish_reason == "stop"
    out = client.completions.create(
        model="textgen",
        prompt="首都是",
        max_tokens=5,
        extra_body={"guided_choice": ["北京", "上海"]},
    )
    assert out.choices[0].text in ("北京", "上海")
    with pytest.raises(openai.UnprocessableEntityError, match="suffix"):
        client.completions.create(model="textgen", prompt="中国", suffix="。")


def test_echo_with_max_tokens_0_scores_the_prompt_as_eval_does(client, gen):
    prompt = "中国人民银行今天宣布，经济发展。"
    body = {"prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 0}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    lps = choice["logprobs"]
    assert choice["text"] == prompt and lps["token_logprobs"][0] is None
    assert "".join(lps["tokens"]) == prompt and lps["text_offset"][:3] == [0, 1, 2]
    ids = np.asarray(gen.engine().tokenizer.encode(prompt))
    ev = evaluate_ids(gen.model, ids, gen.vocab, batch_size=1)
    bits = -sum(lps["token_logprobs"][1:]) / math.log(2)
    assert bits / (len(ids) - 1) == pytest.approx(ev["bpc"], rel=1e-5)


def test_best_of_and_logit_bias_over_http(client):
    body = {"prompt": "中国", "max_new_tokens": 15, "seed": 2, "n": 1, "best_of": 3}
    r = client.post("/v1/generate", json=body)
    assert r.status_code == 200 and len(r.json()["choices"]) == 1
    r = client.post("/v1/completions", json={"prompt": "中国", "logit_bias": {"国": 100}})
    assert r.status_code == 200 and set(r.json()["choices"][0]["text"]) == {"国"}


@pytest.mark.parametrize(
    ("path", "body", "field", "shown"),
    [
        ("/v1/generate", {"regex": "("}, "regex", "'('"),
        ("/v1/generate", {"regex": "ж+"}, "regex", "'ж'"),
        ("/v1/generate", {"regex": "[\u0100-\u0110]+"}, "regex", "no text"),
        ("/v1/generate", {"choice": []}, "choice", "[]"),
        ("/v1/generate", {"form": "九言绝句"}, "form", "'九言绝句'"),
        ("/v1/generate", {"form": "五言绝句", "acrostic": "中国人民银行"}, "acrostic", "6 heads"),
        ("/v1/generate", {"logit_bias": {"ж": 1}}, "logit_bias", "'ж'"),
        ("/v1/generate", {"logit_bias": {"5": 101}}, "logit_bias", "101"),
        ("/v1/generate", {"logit_bias": {"999999": 1}}, "logit_bias", "999999"),
        ("/v1/generate", {"regex": "中", "form": "五言绝句"}, "form", "regex"),
        ("/v1/generate", {"best_of": 2, "stream": True}, "best_of", "stream"),
        ("/v1/completions", {"suffix": "。"}, "suffix", "'。'"),
        ("/v1/completions", {"max_new_tokens": 3}, "max_new_tokens", "3"),
        ("/v1/completions", {"presence_penalty": 0.5}, "presence_penalty", "0.5"),
        ("/v1/completions", {"guided_regex": "ж"}, "regex", "'ж'"),
        ("/v1/completions", {"echo": True, "stream": True}, "echo", "stream"),
    ],
)
def test_bad_directions_get_422_naming_field_and_value(client, path, body, field, shown):
    r = client.post(path, json={"prompt": "中国", **body})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"].startswith(field) and shown in err["message"], err
    assert (
        client.post("/v1/generate", json={"prompt": "中国", "max_new_tokens": 2}).status_code == 200
    )


def test_fill_over_http_and_its_422s(client):
    r = client.post("/v1/fill", json={"text": "中国＿＿发展", "top": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [b["position"] for b in body["blanks"]] == [2, 3] and len(body["text"]) == 6
    assert all(len(b["candidates"]) == 3 for b in body["blanks"])
    for bad, param, says in [
        ({"text": "没有空白"}, "text", "no blank"),
        ({"text": "＿＿"}, "text", "only blanks"),
        ({"text": "中＿", "top": 0}, "top", "0"),
        ({"text": "中＿", "beam": 2}, "beam", "2"),
        ({"text": "中\x00＿"}, "text", "NUL"),
    ]:
        r = client.post("/v1/fill", json=bad)
        assert r.status_code == 422 and r.json()["error"]["param"] == param, r.text
        assert says in r.json()["error"]["message"]
