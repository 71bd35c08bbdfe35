"""The constraint stage of sampling: which tokens a sample may draw next, state by state.

A :class:`Constraint` wraps an outlines-core index (:mod:`textgen.inference.patterns`) over
the model's vocabulary. Each sample that carries one keeps an integer state: the constraint
gives that state's allowed tokens as a mask over the vocabulary, and the drawn token moves it
on. Masks are built once per state and cached, so a constrained step costs a dictionary
lookup and a masked fill.

Ending: a pattern that is complete and cannot go on ends the sample (finish_reason "stop").
Where it is complete but could go on (``[0-9]+`` after a digit), the model decides: the
paragraph mark ``\\n``, the corpus's own end of a text, is then allowed as the end and is not
part of the text (unless the pattern itself allows a ``\\n`` there, when it is a character).

:class:`Constraints` compiles what a :class:`GenerationConfig` asks for, once per pattern and
vocabulary (an LRU cache); a regex goes through the time-bounded worker process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from textgen.data.tokenizer import Vocab
from textgen.inference.patterns import (
    FieldError,
    RegexWorker,
    VocabKey,
    build_index,
    choice_regex,
    form_regex,
)

END = "\n"  # the paragraph mark: a sample that may end ends with it


class Entry(NamedTuple):
    """What a state allows: ``mask`` (V,) bool; ``complete``: the pattern is done and cannot
    go on; ``ends``: the end mark is allowed as the end; ``penalty``: the mask as (V,)
    float32 to add to scores, 0 or -inf."""

    mask: Tensor
    complete: bool
    ends: bool
    penalty: Tensor


DONE = Entry(torch.zeros(0, dtype=torch.bool), True, False, torch.zeros(0))  # after the end


class Constraint:
    """One compiled pattern over one vocabulary (shared by every request that asks for it)."""

    def __init__(self, index: Any, vocab_size: int, end_id: int | None, pattern: str) -> None:
        self.index, self.vocab_size, self.end_id, self.pattern = index, vocab_size, end_id, pattern
        self._masks: dict[int, Entry] = {}
        self._lock = threading.Lock()  # a cache filled from the engine thread and the CLI

    def start(self) -> int:
        return int(self.index.get_initial_state())

    def _entry(self, state: int) -> Entry:
        """``state``'s :class:`Entry`, built at its first visit and cached."""
        entry = self._masks.get(state)
        if entry is None:
            allowed = self.index.get_allowed_tokens(state)  # may hold the end id: V
            final = bool(self.index.is_final_state(state))
            full = torch.zeros(self.vocab_size + 1, dtype=torch.bool)
            full[torch.tensor(allowed, dtype=torch.long)] = True
            mask = full[: self.vocab_size]
            can_go_on = bool(mask.any())
            end_is_char = self.end_id is not None and bool(mask[self.end_id])
            ends = final and self.end_id is not None and not end_is_char and can_go_on
            if ends:
                mask[self.end_id] = True
            penalty = torch.zeros(self.vocab_size).masked_fill_(~mask, float("-inf"))
            entry = Entry(mask, final and not can_go_on, ends, penalty)
            with self._lock:
                self._masks[state] = entry
        return entry

    def mask(self, state: int) -> Tensor:
        """The tokens allowed in ``state``: (V,) bool."""
        return self._entry(state).mask

    def penalty(self, state: int) -> Tensor:
        """What sampling adds to the scores in ``state``: (V,) float32, 0 or -inf."""
        return self._entry(state).penalty

    def advance(self, state: int, token: int) -> tuple[int, Entry, bool]:
        """(next state, its entry, ``token`` was the end mark and not text). On the end mark
        the state stays and its entry says complete."""
        if self._entry(state).ends and token == self.end_id:
            return state, DONE, True
        nxt = self.index.get_next_state(state, token)
        if nxt is None:  # unreachable: the mask only admits tokens with a transition
            raise RuntimeError(f"token {token} is not allowed in state {state} of {self.pattern!r}")
        return int(nxt), self._entry(int(nxt)), False


class Constraints:
    """Compiles and caches the constraints of one vocabulary (an engine's)."""

    def __init__(
        self,
        vocab: Vocab,
        to_model_text: Callable[[str], str],
        timeout: float = 2.0,
        cache_size: int = 64,
    ) -> None:
        """``to_model_text``: how a choice or head is read (script conversion, normalisation),
        the way prompts are."""
        self.vocab, self.to_model_text = vocab, to_model_text
        self.key = VocabKey(tuple(vocab.tokens), (vocab.unk_id,))
        self.end_id = vocab.id(END) if END in vocab else None
        self.worker = RegexWorker(timeout)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, Constraint] = OrderedDict()
        self._lock = threading.Lock()

    def for_config(self, config: Any) -> Constraint | None:
        """The constraint a GenerationConfig asks for (None: none); FieldError naming the
        field when it cannot be built. At most one of regex, choice and form is set. The
        cache is keyed on the request's own text: reading it the model's way (script,
        normalisation) happens only on a miss."""
        if config.regex is not None:
            return self._get(("regex", config.regex), lambda: config.regex, "regex")
        if config.choice is not None:
            return self._get(("choice", config.choice), lambda: self._choices(config), "choice")
        if config.form is not None or config.acrostic is not None:
            key = ("form", config.form, config.acrostic)
            return self._get(key, lambda: self._form(config), "form")
        return None

    def _choices(self, config: Any) -> str:
        return choice_regex([self._text("choice", c) for c in config.choice])

    def _form(self, config: Any) -> str:
        heads = self._heads(config.acrostic or "")
        form = config.form if config.form is not None else f"{max(len(heads), 1)}x7"
        return form_regex(form, heads)

    def _text(self, field: str, text: str) -> str:
        out = self.to_model_text(text)
        if not out:
            raise FieldError(field, f"empty after normalisation, got {text!r}")
        missing = sorted({c for c in out if c not in self.vocab})
        if missing and self.vocab.level == "char":
            shown = ", ".join(repr(c) for c in missing[:10])
            raise FieldError(field, f"characters the model does not have: {shown}")
        return out

    def _heads(self, acrostic: str) -> str:
        heads = "".join(acrostic.split())  # 春 夏 秋 冬 or 春夏秋冬
        return self._text("acrostic", heads) if heads else ""

    def _get(self, key: tuple, pattern: Callable[[], str], field: str) -> Constraint:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        regex = pattern()
        # a user's regex may explode: the worker bounds it; forms and choices are linear
        if field == "regex":
            index = self.worker.compile(regex, self.key)
        else:
            try:
                index = build_index(regex, self.key)
            except FieldError as e:
                raise FieldError(field, e.message) from None
        built = Constraint(index, len(self.vocab), self.end_id, regex)
        with self._lock:
            self._cache[key] = built
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return built

    def close(self) -> None:
        self.worker.close()


def bias_tensors(vocab: Vocab, logit_bias: Mapping[str, float]) -> tuple[Tensor, Tensor]:
    """logit_bias -> (ids, values) tensors. A key of ASCII digits is a token id (OpenAI's
    form); any other key is a token itself (a character: textgen's extension)."""
    ids: list[int] = []
    for key in logit_bias:
        if key.isascii() and key.isdigit():
            if int(key) >= len(vocab):
                raise FieldError(
                    "logit_bias",
                    f"token id {key} is outside the vocabulary (0 to {len(vocab) - 1})",
                )
            ids.append(int(key))
        elif key in vocab:
            ids.append(vocab.id(key))
        else:
            raise FieldError("logit_bias", f"{key!r} is not a token of this model")
    values = torch.tensor(list(logit_bias.values()), dtype=torch.float32)
    return torch.tensor(ids), values
