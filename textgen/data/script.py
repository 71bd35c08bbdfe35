"""Traditional and Simplified Chinese at the edges, converted with OpenCC.

A model is trained on one script, never on a converted corpus. Text that arrives in the other
script (a prompt, a stop string, `eval --text`) is converted to the model's script before it
is normalised and encoded, and generated text is converted to the script a request asks for.

A character that OpenCC's ``t2s`` changes exists only in Traditional text; one that ``s2t``
changes exists only in Simplified text. Counting such occurrences tells the scripts apart
(:func:`detect_script`); most characters (中, 人, ，) are shared and count for neither.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import opencc

if TYPE_CHECKING:
    from textgen.data.tokenizer import Vocab

SCRIPTS = ("auto", "simplified", "traditional")
_CONFIGS = {"simplified": "t2s", "traditional": "s2t"}  # target script -> OpenCC config


@cache
def _converter(config: str) -> opencc.OpenCC:
    """One OpenCC converter per config: building one loads its dictionaries."""
    return opencc.OpenCC(config)


def to_script(text: str, script: str) -> str:
    """``text`` in ``script`` ("simplified" or "traditional"); any other script: unchanged."""
    config = _CONFIGS.get(script)
    return _converter(config).convert(text) if config and text else text


def detect_script(counts: Mapping[str, int]) -> str:
    """Which script ("simplified", "traditional", "unknown") {text: occurrences} is written in.

    Whichever script has more occurrences of its own characters wins; "unknown" when there
    are none (or as many of each).
    """
    # one OpenCC call; "\n" (in no phrase) keeps keys from forming phrases with each other
    chars = "\n".join(counts)
    weights = [w for key, n in counts.items() for w in [n] * len(key) + [0]][: len(chars)]
    if not chars:
        return "unknown"
    t2s, s2t = to_script(chars, "simplified"), to_script(chars, "traditional")
    if len(t2s) != len(chars) or len(s2t) != len(chars):  # a phrase changed length: by char
        t2s = "".join(_one_char(c, "simplified") for c in chars)
        s2t = "".join(_one_char(c, "traditional") for c in chars)
    traditional = sum(w for w, a, b in zip(weights, chars, t2s, strict=True) if a != b)
    simplified = sum(w for w, a, b in zip(weights, chars, s2t, strict=True) if a != b)
    if traditional > simplified:
        return "traditional"
    if simplified > traditional:
        return "simplified"
    return "unknown"


def detect_text_script(text: str) -> str:
    """:func:`detect_script` of one text, each character counted where it occurs."""
    return detect_script({text: 1})


def model_script(ckpt: Mapping[str, Any], vocab: Vocab) -> str:
    """The script a checkpoint records, else the one its vocabulary's characters show."""
    recorded = ckpt.get("tokenizer", {}).get("script")
    if recorded in ("simplified", "traditional"):
        return recorded
    return detect_script(dict.fromkeys(vocab.tokens[1:], 1))  # tokens[0] is <unk>


def to_model_script(text: str, model: str, known: Container[str] | None = None) -> str:
    """A prompt or stop string in the model's script, if it is written in the other one.

    With ``known`` (the model's vocabulary) a character the model knows is never replaced:
    a model fine-tuned from a Simplified base on Traditional text knows both 国 and 國, and
    only characters it lacks are worth converting.
    """
    found = detect_text_script(text)
    if not (model in _CONFIGS and found in _CONFIGS and found != model):
        return text
    converted = to_script(text, model)
    if known is None or len(converted) != len(text):
        return converted
    return "".join(a if a in known else b for a, b in zip(text, converted, strict=True))


def output_script(requested: str, prompt: str, model: str) -> str:
    """The script to answer in. "auto": the prompt's, else (nothing tells) the model's."""
    if requested != "auto":
        return requested
    found = detect_text_script(prompt)
    return found if found != "unknown" else model


class StreamConverter:
    """Converts a growing text to ``script`` piece by piece; what it gave never changes.

    ``out[i]`` always stands for ``text[i]`` (a piece whose conversion changes its length is
    converted char by char instead), so char offsets into the model's text, such as
    log-probability offsets, hold in the output. OpenCC converts phrase-aware (头发 -> 頭髮,
    but 发 alone -> 發), so each piece is converted with ``CONTEXT`` chars before it and, until
    the text is final, the last ``LOOKAHEAD`` chars are held back as right context.
    """

    CONTEXT = 8
    LOOKAHEAD = 4

    def __init__(self, script: str, context: str = "") -> None:
        self.script = script
        self.context = context[-self.CONTEXT :]  # e.g. the prompt's tail, in the model script
        self.out = ""

    def extend(self, text: str, end: int, final: bool) -> str:
        """``out`` grown to cover ``text[:end]`` (all but LOOKAHEAD chars unless final)."""
        start = len(self.out)
        stop = end if final else end - self.LOOKAHEAD
        if stop <= start:
            return self.out
        lo = start - self.CONTEXT
        left = self.context[lo:] if lo < 0 else ""
        segment = left + text[max(lo, 0) : end]
        converted = to_script(segment, self.script)
        skip = len(left) + start - max(lo, 0)
        if len(converted) == len(segment):
            self.out += converted[skip : skip + stop - start]
        else:
            self.out += "".join(_one_char(c, self.script) for c in text[start:stop])
        return self.out


def _one_char(char: str, script: str) -> str:
    converted = to_script(char, script)
    return converted if len(converted) == 1 else char
