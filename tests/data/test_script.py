"""Traditional / Simplified Chinese at the edges: detection, conversion, the output script."""

from __future__ import annotations

import pytest

from textgen.data.script import (
    SCRIPTS,
    StreamConverter,
    detect_script,
    detect_text_script,
    model_script,
    output_script,
    to_model_script,
    to_script,
)
from textgen.data.tokenizer import Vocab

TRADITIONAL = "春眠不覺曉，處處聞啼鳥"
SIMPLIFIED = "春眠不觉晓，处处闻啼鸟"


@pytest.mark.parametrize(
    ("text", "script"),
    [
        (TRADITIONAL, "traditional"),
        (SIMPLIFIED, "simplified"),
        ("中文，abc 123", "unknown"),  # shared characters only
        ("", "unknown"),
        ("国國", "unknown"),  # one of each: a tie tells nothing
    ],
)
def test_detect_text_script(text, script):
    assert detect_text_script(text) == script


def test_detect_script_weighs_occurrences():
    assert detect_script({"國": 3, "国": 2, "\n": 9}) == "traditional"
    assert detect_script({"國": 1, "国": 2}) == "simplified"
    assert detect_script({}) == "unknown"


def test_conversion_both_ways_is_phrase_aware():
    assert to_script(TRADITIONAL, "simplified") == SIMPLIFIED
    assert to_script(SIMPLIFIED, "traditional") == TRADITIONAL
    assert to_script("头发", "traditional") == "頭髮"  # not 頭發: OpenCC reads the phrase
    assert to_script(SIMPLIFIED, "auto") == SIMPLIFIED


def test_model_script_recorded_else_from_vocabulary():
    vocab = Vocab(["<unk>", "这", "个", "国", "中"])
    assert model_script({"tokenizer": {}}, vocab) == "simplified"
    assert model_script({"tokenizer": {"script": "traditional"}}, vocab) == "traditional"
    assert model_script({}, Vocab(["<unk>", "中", "a"])) == "unknown"


def test_prompt_goes_to_the_model_script_and_auto_answers_in_the_prompts():
    assert to_model_script(TRADITIONAL, "simplified") == SIMPLIFIED
    assert to_model_script(SIMPLIFIED, "simplified") == SIMPLIFIED
    assert to_model_script(TRADITIONAL, "unknown") == TRADITIONAL
    assert output_script("auto", TRADITIONAL, "simplified") == "traditional"
    assert output_script("auto", "中文", "simplified") == "simplified"  # nothing tells: model's
    assert output_script("simplified", TRADITIONAL, "simplified") == "simplified"


def test_stream_converter_keeps_length_and_matches_whole_conversion():
    text = "发很长，头发也长了。后来他干了一件事。"
    conv = StreamConverter("traditional", context="我的头")
    pieces, shown = [], 0
    for end in range(1, len(text) + 1):
        out = conv.extend(text, end, final=end == len(text))
        held = 0 if end == len(text) else StreamConverter.LOOKAHEAD
        assert len(out) == max(end - held, 0)  # one output char per char, the tail held
        pieces.append(out[shown:])
        shown = len(out)
    assert "".join(pieces) == conv.out == to_script("我的头" + text, "traditional")[3:]
    assert conv.out.startswith("髮")  # the prompt's 头 made it 頭髮, not 發


def test_http_schema_lists_the_same_scripts():
    from typing import get_args

    from textgen.server.requests import Script

    assert get_args(Script) == SCRIPTS
