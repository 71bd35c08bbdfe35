"""The batched step engine shared by the CLI, the HTTP server and the benchmarks.

An RNN's state is small and fixed-size, so continuous batching is cheap: the engine keeps
one stacked state (L, B, H) for every sequence in flight and advances all of them with one
model call per :meth:`Engine.step`. Between steps, finished or cancelled sequences leave
(their rows are dropped) and waiting requests join (their prompt is prefilled in one call,
then their rows are appended). ``max_batch=1`` turns batching off: one sequence at a time.

Scripts are handled at the edges (:mod:`textgen.script`): a prompt and stop strings written
in the other Chinese script are converted to the model's before normalisation, stop strings
are matched on the model's text, and each sample's text is converted to the requested script
as it grows (:class:`~textgen.script.StreamConverter`), one char for one char, so log-prob
offsets hold and streamed chunks add up to the final text.

``submit`` is thread-safe; ``step`` must always be called from the same thread (the server's
engine thread, or the caller itself for the CLI). Results go to each request's ``sink``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from textgen.model import CharLM, State
from textgen.sampling import (
    Chunk,
    Done,
    Event,
    Failed,
    GenerationConfig,
    GenerationResult,
    RowParams,
    SampleResult,
    TokenLogprob,
    sample_next,
    token_logprobs,
)
from textgen.script import StreamConverter, model_script, output_script, to_model_script
from textgen.tokenizer import Vocab, make_tokenizer

log = logging.getLogger(__name__)
Sink = Callable[[list[Event]], None]


class QueueFull(RuntimeError):
    """Too many requests in flight; the server answers 429."""


class PromptError(ValueError):
    """A prompt the model cannot start from (empty after normalisation, too long)."""


# Measured on the 2-core CPU, 2x512 LSTM, one thread: oneDNN costs ~5 ms of overhead per call
# but runs long sequences faster (prefill of 2 tokens: 6.9 ms with it, 1.4 without; 32: 12.5
# vs 13.1; 512: 84 vs 131). One-token decode steps are 2-3x faster without it at any batch.
ONEDNN_MIN_PROMPT = 32


def _mkldnn(enabled: bool):
    # Only the enabled flag is touched (setting the tf32 flags warns on CPU builds).
    return torch.backends.mkldnn.flags(
        enabled=enabled, deterministic=None, allow_tf32=None, fp32_precision=None
    )


class Request:
    """One prompt and its ``n`` samples, from submission to its Done event."""

    def __init__(self, rid: str, prompt: str, ids: np.ndarray, unknown: int,
                 config: GenerationConfig, sink: Sink | None, stream: bool,
                 script: str = "unknown", convert: bool = False) -> None:  # fmt: skip
        self.id, self.prompt, self.ids, self.unknown = rid, prompt, ids, unknown
        self.config, self.sink, self.stream = config, sink, stream
        self.script, self.convert = script, convert  # output script; convert the model's text?
        self.cancelled = False
        self.finished = False
        self.samples: list[_Sample] = []
        self.t_submit = time.perf_counter()
        self.t_admit = self.t_first = self.t_end = 0.0

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
        samples = [s.result() for s in self.samples]
        return GenerationResult(self.id, self.prompt, len(self.ids), self.unknown, samples, timing,
                                self.script)  # fmt: skip


class _Sample:
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
        self.finish_reason: str | None = None

    def push(self, token: int, piece: str, logprob: TokenLogprob | None) -> None:
        cfg = self.request.config
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
        if self.conv is not None:  # every step, streaming or not: the same text either way
            self.conv.extend(self.text, len(self.text) - self.hold, self.finish_reason is not None)

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


class Engine:
    """Continuous batching over one model. See the module docstring.

    ``max_queue`` bounds the requests in flight (waiting or generating); ``on_step`` is called
    after each step with the decode batch size and the number of tokens drawn.
    """

    def __init__(self, model: CharLM, vocab: Vocab, normalize: Callable[[str], str],
                 max_batch: int = 64, max_queue: int = 256,
                 on_step: Callable[[int, int], None] | None = None,
                 script: str | None = None) -> None:  # fmt: skip
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.model, self.vocab, self.normalize = model.eval(), vocab, normalize
        self.tokenizer = make_tokenizer(vocab)
        # the model's script: the checkpoint's record (see Generator), else its vocabulary's
        self.script = script if script is not None else model_script({}, vocab)
        self.max_batch, self.max_queue, self.on_step = max_batch, max_queue, on_step
        self._lock = threading.Lock()
        self._waiting: deque[Request] = deque()
        self._active: list[_Sample] = []
        self._state: State | None = None  # rows aligned with self._active
        self._in_flight = 0
        self._ids = itertools.count(1)

    # ------------------------------------------------------------ submission (any thread)
    def request(self, prompt: str, config: GenerationConfig, sink: Sink | None = None,
                stream: bool = False, max_prompt_tokens: int | None = None) -> Request:  # fmt: skip
        """Normalise and encode a prompt the checkpoint's way; raise PromptError if unusable.

        A prompt or stop string in the other Chinese script is first converted to the model's.
        """
        script = output_script(config.script, prompt, self.script)
        text = self.normalize(to_model_script(prompt, self.script, self.vocab))
        if not text:
            raise PromptError(f"prompt is empty after normalisation, got {prompt[:40]!r}")
        ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise PromptError(f"prompt must be at most {max_prompt_tokens} tokens, got {len(ids)}")
        unknown = int(np.count_nonzero(ids == self.vocab.unk_id))
        stop = tuple(to_model_script(s, self.script, self.vocab) for s in config.stop)
        if stop != config.stop:
            config = dataclasses.replace(config, stop=stop)
        return Request(f"gen-{next(self._ids)}", text, ids, unknown, config, sink, stream,
                       script, convert=script != self.script)  # fmt: skip

    def submit(self, request: Request) -> Request:
        """Queue a request; raise QueueFull if ``max_queue`` requests are already in flight."""
        with self._lock:
            if self._in_flight >= self.max_queue:
                raise QueueFull(
                    f"{self._in_flight} requests in flight (max_queue={self.max_queue})"
                )
            self._in_flight += 1
            self._waiting.append(request)
        return request

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._active

    # ------------------------------------------------------------ stepping (engine thread)
    @torch.inference_mode()
    def step(self) -> None:
        """Drop cancelled rows, admit waiting requests, advance every active row one token."""
        events: dict[Request, list[Event]] = {}
        self._drop_cancelled(events)
        prefilled = self._admit(events)  # tokens drawn from the new prompts' prefills
        batch = len(self._active)
        if batch:
            ids = torch.tensor([[s.last] for s in self._active])  # (B, 1)
            with _mkldnn(False):
                features, self._state = self.model(ids, self._state)  # (B, 1, H)
                logp = self.model.log_probs(features)[:, 0]  # (B, V)
            self._advance(self._active, logp, events)
            self._compact()
        if self.on_step is not None and (batch or prefilled):
            self.on_step(batch, batch + prefilled)
        self._deliver(events)

    def fail_all(self, message: str) -> None:
        """After an unexpected error: end every request in flight with a Failed event."""
        with self._lock:
            requests = {s.request for s in self._active} | set(self._waiting)
            self._waiting.clear()
            self._in_flight = 0
        self._active, self._state = [], None
        for req in requests:
            if req.sink is not None:
                req.sink([Failed(message)])

    def _drop_cancelled(self, events: dict[Request, list[Event]]) -> None:
        gone = {s.request for s in self._active if s.request.cancelled}
        with self._lock:
            waiting = [r for r in self._waiting if r.cancelled]
            for r in waiting:
                self._waiting.remove(r)
        for req in gone | set(waiting):
            for s in req.samples:
                s.finish_reason = s.finish_reason or "cancelled"
            self._finish(req, events)
        if gone:
            self._compact()

    def _admit(self, events: dict[Request, list[Event]]) -> int:
        admitted = 0
        while self._waiting:
            req = self._waiting[0]
            room = self.max_batch - len(self._active)
            if self._active and req.config.n > room:
                break  # FIFO: it waits for rows to free up; a lone big request always fits
            with self._lock:
                self._waiting.popleft()
            self._prefill(req, events)
            admitted += req.config.n
        return admitted

    def _prefill(self, req: Request, events: dict[Request, list[Event]]) -> None:
        req.t_admit = time.perf_counter()
        n = req.config.n
        ids = torch.from_numpy(req.ids)[None]  # (1, T)
        with _mkldnn(len(req.ids) >= ONEDNN_MIN_PROMPT):
            features, state = self.model(ids)  # whole prompt in one call: (1, T, H)
            logp = self.model.log_probs(features[:, -1:])[:, 0]  # (1, V)
        req.samples = [_Sample(req, i) for i in range(n)]
        self._advance(req.samples, logp.expand(n, -1), events)  # first token of each sample
        req.t_first = time.perf_counter()
        state = CharLM.select_state(state, [0] * n)  # (L, n, H): samples share the prompt
        self._active.extend(req.samples)
        self._state = state if self._state is None else CharLM.stack_states([self._state, state])
        self._compact()

    def _advance(self, samples: Sequence[_Sample], logp: Tensor,
                 events: dict[Request, list[Event]]) -> None:  # fmt: skip
        """Draw one token per sample from logp (B, V) and record what it emits."""
        rows = [RowParams(s.request.config, s.recent, s.rng.random()) for s in samples]
        tokens = sample_next(logp, rows, banned=(self.vocab.unk_id,)).tolist()
        configs = [s.request.config for s in samples]
        lps = token_logprobs(logp, tokens, configs, self.vocab.tokens)
        pieces = self.vocab.tokens
        for s, tok, lp in zip(samples, tokens, lps, strict=True):
            s.push(tok, pieces[tok], lp)
            if s.request.stream and (chunk := s.take_chunk()) is not None:
                events.setdefault(s.request, []).append(chunk)
            if s.finish_reason and s.request.done:
                self._finish(s.request, events)

    def _finish(self, req: Request, events: dict[Request, list[Event]]) -> None:
        if req.finished:
            return
        req.finished = True
        req.t_end = time.perf_counter()
        if not req.t_first:
            req.t_admit = req.t_first = req.t_end
        with self._lock:
            self._in_flight -= 1
        events.setdefault(req, []).append(Done(req.result()))

    def _compact(self) -> None:
        """Drop the rows of finished samples from the batch and its state."""
        keep = [i for i, s in enumerate(self._active) if not s.finish_reason]
        if len(keep) == len(self._active):
            return
        self._active = [self._active[i] for i in keep]
        self._state = CharLM.select_state(self._state, keep) if keep else None

    @staticmethod
    def _deliver(events: dict[Request, list[Event]]) -> None:
        for req, evs in events.items():
            if req.sink is not None:
                req.sink(evs)
