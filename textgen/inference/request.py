"""One generation request and its samples: text, stop strings, script conversion, log-probs.

A :class:`Request` holds a prompt and its samples from submission to its Done event (``n``
of them, or ``best_of`` of which the ``n`` best are returned); each :class:`Sample` grows its
text one token at a time, moves its constraint's state with each token, and decides what is
safe to show (a stop string may still be forming; converted text must cover whole tokens).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from textgen.data.script import StreamConverter
from textgen.inference.events import (
    Chunk,
    Event,
    FinishReason,
    GenerationResult,
    SampleResult,
    TokenLogprob,
)

if TYPE_CHECKING:
    from textgen.inference.constraints import Constraint
    from textgen.inference.sampling import GenerationConfig

Sink = Callable[[list[Event]], None]


class Request:
    """One prompt and its ``n`` samples, from submission to its Done event."""

    def __init__(
        self,
        rid: str,
        prompt: str,
        ids: np.ndarray,
        unknown: int,
        config: GenerationConfig,
        sink: Sink | None,
        stream: bool,
        script: str = "unknown",
        convert: bool = False,
        timeout: float | None = None,
        queue_timeout: float | None = None,
        constraint: Constraint | None = None,
        bias: Any = None,
    ) -> None:
        """``constraint``: compiled from the config's regex, choice or form; ``bias``: the
        config's logit_bias as (ids, values) tensors."""
        self.id, self.prompt, self.ids, self.unknown = rid, prompt, ids, unknown
        self.constraint, self.bias = constraint, bias
        self.prompt_logprobs: list[TokenLogprob] | None = None  # filled at prefill (echo)
        self.config, self.sink, self.stream = config, sink, stream
        self.script, self.convert = script, convert  # output script; convert the model's text?
        self.cancelled = False
        self.finished = False
        self.samples: list[Sample] = []
        self.t_submit = time.perf_counter()
        self.t_admit = self.t_first = self.t_end = 0.0
        # perf_counter deadlines: generation stops at ``deadline`` (finish_reason "timeout");
        # a request not admitted by ``start_by`` never starts (Expired)
        self.deadline = None if timeout is None else self.t_submit + timeout
        self.start_by = None if queue_timeout is None else self.t_submit + queue_timeout

    def cancel(self) -> None:
        """Ask the engine to drop this request at its next step (a plain flag: thread-safe)."""
        self.cancelled = True

    @property
    def done(self) -> bool:
        return bool(self.samples) and all(s.finish_reason for s in self.samples)

    def result(self) -> GenerationResult:
        ms = 1000.0
        decode_s = max(self.t_end - self.t_first, 0.0)
        chars = sum(len(s.text) for s in self.samples)
        timing = {
            "queue_ms": (self.t_admit - self.t_submit) * ms,
            "prefill_ms": (self.t_first - self.t_admit) * ms,
            "decode_ms": decode_s * ms,
            "total_ms": (self.t_end - self.t_submit) * ms,
            "chars_per_s": chars / decode_s if decode_s > 0 else 0.0,
        }
        samples = [s.result() for s in self._kept()]
        return GenerationResult(
            self.id,
            self.prompt,
            len(self.ids),
            self.unknown,
            samples,
            timing,
            self.script,
            self.prompt_logprobs,
        )

    def _kept(self) -> list[Sample]:
        """The samples returned: all, or with best_of the n of highest mean log-probability
        (ties: the lower index), renumbered 0..n-1 in that order."""
        cfg = self.config
        if cfg.best_of is None or cfg.best_of == cfg.n:
            return self.samples
        ranked = sorted(self.samples, key=lambda s: (-s.mean_logprob, s.index))[: cfg.n]
        for i, s in enumerate(ranked):
            s.index = i
        return ranked


class Sample:
    """One sequence being generated: its text, stop-string bookkeeping and log-probs."""

    def __init__(self, request: Request, index: int) -> None:
        cfg = request.config
        self.request, self.index = request, index
        seed = cfg.seed if cfg.seed is not None else random.SystemRandom().getrandbits(63)
        self.rng = random.Random(f"{seed}/{index}")  # a per-sample stream: batch-independent
        self.recent = [int(t) for t in request.ids[len(request.ids) - cfg.repetition_window :]]
        self.last = 0  # the token fed at the next decode step
        self.text = ""  # in the model's script: stop strings and offsets refer to it
        self.conv = StreamConverter(request.script, request.prompt) if request.convert else None
        self.tokens = 0
        self.hold = 0  # trailing chars that may start a stop string: not emitted yet
        self.emitted = 0
        self.logprobs: list[TokenLogprob] = []
        self._lp_sent = 0
        self.finish_reason: FinishReason | None = None
        self.constraint = request.constraint
        self.cstate = self.constraint.start() if self.constraint is not None else 0
        self._penalty = None if self.constraint is None else self.constraint.penalty(self.cstate)
        self.score = 0.0  # the sum of the drawn tokens' model log-probs (for best_of)

    @property
    def mean_logprob(self) -> float:
        return self.score / self.tokens if self.tokens else float("-inf")

    def allowed(self) -> Any:
        """What the constraint allows next as an additive mask ((V,) float32, 0 or -inf), or
        None when unconstrained."""
        return self._penalty

    def push(self, token: int, piece: str, logprob: TokenLogprob | None) -> None:
        cfg = self.request.config
        complete = False
        if self.constraint is not None:
            self.cstate, entry, is_end = self.constraint.advance(self.cstate, token)
            complete, self._penalty = entry.complete, entry.penalty
            if is_end:  # the paragraph mark ended a complete pattern: not part of the text
                self._finish("stop")
                return
        self.last = token
        self.tokens += 1
        self.recent.append(token)
        if len(self.recent) > 2 * cfg.repetition_window:  # trim now and then, not every step
            del self.recent[: -cfg.repetition_window]
        start = len(self.text)
        if logprob is not None:
            logprob.offset = start
            self.logprobs.append(logprob)
        self.text += piece
        self.hold = self._check_stop(start)
        if self.finish_reason is None and len(self.text) >= cfg.max_new_tokens:
            # characters, not tokens: a word-level model's last word may be cut
            self.text = self.text[: cfg.max_new_tokens]
            self.hold = min(self.hold, len(self.text))
            self.finish_reason = "length"
        if complete and self.finish_reason is None:
            self.finish_reason, self.hold = "stop", 0  # the pattern cannot go on
        if self.conv is not None:  # every step, streaming or not: the same text either way
            self.conv.extend(self.text, len(self.text) - self.hold, self.finish_reason is not None)

    def _finish(self, reason: FinishReason) -> None:
        """End the sample without a new token: what was held back is final now."""
        self.finish_reason, self.hold = reason, 0
        if self.conv is not None:
            self.conv.extend(self.text, len(self.text), True)

    def _shown(self, final: bool) -> tuple[str, int]:
        """The text in the requested script and how much of it is safe to show."""
        if self.conv is None:
            return self.text, len(self.text) if final else len(self.text) - self.hold
        out = self.conv.extend(self.text, len(self.text), True) if final else self.conv.out
        return out, len(out)

    def _logprobs(self, first: int, end: int, final: bool) -> list[TokenLogprob]:
        """Log-probs from ``first`` of the tokens shown in ``text[:end]``, as the text shows them.

        Converted text keeps the model text's length, so offsets still hold; a token's string
        is rewritten once the converter has covered all of it (or the text is final). ``top``
        alternatives stay vocabulary entries: t2s maps 乾, 幹 and 干 all to 干.
        """
        last, whole = first, self.conv is not None and not final
        while last < len(self.logprobs):
            lp = self.logprobs[last]
            if lp.offset + (len(lp.token) if whole else 1) > end:
                break
            last += 1
        lps = self.logprobs[first:last]
        if self.conv is not None:
            for lp in lps:  # past a stop string's cut, a token keeps its vocabulary tail
                shown = self.conv.out[lp.offset : lp.offset + len(lp.token)]
                lp.token = shown + lp.token[len(shown) :]
        return lps

    def _check_stop(self, start: int) -> int:
        """Cut the text at the first stop string; else how many chars might begin one."""
        stops = self.request.config.stop
        if not stops:
            return 0
        lo = max(0, start - max(map(len, stops)) + 1)
        hits = [i for s in stops if (i := self.text.find(s, lo)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.finish_reason = "stop"
            return 0
        hold = 0
        for s in stops:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        return hold

    def take_chunk(self) -> Chunk | None:
        """The text (and its tokens' log-probs) that is safe to show and not shown yet."""
        final = self.finish_reason is not None
        text, end = self._shown(final)
        if end <= self.emitted:
            return None
        lps = None
        if self.request.config.wants_logprobs:
            lps = self._logprobs(self._lp_sent, end, final)
            self._lp_sent += len(lps)
        chunk = Chunk(self.index, text[self.emitted : end], lps)
        self.emitted = end
        return chunk

    def result(self) -> SampleResult:
        text, _ = self._shown(final=True)
        lps = self._logprobs(0, len(text), True) if self.request.config.wants_logprobs else None
        return SampleResult(self.index, text, self.finish_reason or "cancelled", self.tokens, lps)


def score_prompt(model: Any, tokenizer: Any, req: Request) -> list[TokenLogprob]:
    """Each prompt token's log-probability given the tokens before it, from a zero state
    through the float32 model, as `textgen eval` scores text (the first has none)."""
    import dataclasses

    import torch

    from textgen.inference.sampling import token_logprobs

    pieces = tokenizer.split(req.prompt)  # the prompt's own text, <unk>s included
    out = [TokenLogprob(pieces[0], None, 0, None)]
    if len(req.ids) == 1:  # nothing before the first token: nothing to score
        return out
    ids = torch.from_numpy(req.ids)[None]  # (1, T)
    features, _ = model(ids)
    logp = model.log_probs(features[:, :-1])[0]  # (T-1, V): predicts ids[1:]
    wanted = dataclasses.replace(req.config, logprobs=True)
    targets = req.ids[1:].tolist()
    scored = token_logprobs(logp, targets, [wanted] * len(targets), tokenizer.vocab.tokens)
    offset = len(pieces[0])
    for piece, lp in zip(pieces[1:], scored, strict=True):
        assert lp is not None  # every row asked
        out.append(TokenLogprob(piece, lp.logprob, offset, lp.top))
        offset += len(piece)
    return out
