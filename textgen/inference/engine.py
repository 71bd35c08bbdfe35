"""The batched step engine shared by the CLI, the HTTP server and the benchmarks.

An RNN's state is small and fixed-size, so continuous batching is cheap: the engine keeps
one stacked state (L, B, H) for every sequence in flight and advances all of them with one
model call per :meth:`Engine.step`. Between steps, finished or cancelled sequences leave
(their rows are dropped) and waiting requests join (their prompt is prefilled in one call,
then their rows are appended). ``max_batch=1`` turns batching off: one sequence at a time.

Scripts are handled at the edges (:mod:`textgen.data.script`): a prompt and stop strings written
in the other Chinese script are converted to the model's before normalisation, stop strings
are matched on the model's text, and each sample's text is converted to the requested script
as it grows (:class:`~textgen.data.script.StreamConverter`), one char for one char, so log-prob
offsets hold and streamed chunks add up to the final text.

``submit`` is thread-safe; ``step`` must always be called from the same thread (the server's
engine thread, or the caller itself for the CLI). Results go to each request's ``sink``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from textgen.data.script import model_script, output_script, to_model_script
from textgen.data.tokenizer import Vocab, make_tokenizer
from textgen.inference.constraints import Constraints, bias_tensors
from textgen.inference.decoder import Decoder, ModelDecoder
from textgen.inference.events import Done, Event, Expired, Failed
from textgen.inference.request import Request, Sample, Sink, score_prompt
from textgen.inference.sampling import (
    GenerationConfig,
    RowParams,
    sample_next,
    token_logprobs,
)
from textgen.model import state as states
from textgen.model.charlm import CharLM
from textgen.model.state import State

log = logging.getLogger(__name__)
PARAGRAPH = "\n"  # the corpus's paragraph mark: a text starts after one


class QueueFull(RuntimeError):
    """Too many requests in flight; the server answers 429."""


class PromptError(ValueError):
    """A prompt the model cannot start from (empty after normalisation, too long)."""


class Engine:
    """Continuous batching over one model. See the module docstring.

    ``max_queue`` bounds the requests in flight (waiting or generating); ``on_step`` is called
    after each step with the decode batch size and the number of tokens drawn.
    """

    def __init__(
        self,
        model: CharLM,
        vocab: Vocab,
        normalize: Callable[[str], str],
        max_batch: int = 64,
        max_queue: int = 256,
        on_step: Callable[[int, int], None] | None = None,
        script: str | None = None,
        decoder: Decoder | None = None,
        constraints: Constraints | None = None,
    ) -> None:
        """``decoder``: how decode steps run (textgen.inference.decoder); default: the
        float32 model itself. ``constraints``: compiled patterns shared with other engines of
        the same model (a TextGenerator's), so its cache and regex worker outlive this one."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.model, self.vocab, self.normalize = model.eval(), vocab, normalize
        self.decoder = decoder if decoder is not None else ModelDecoder(self.model)
        self.tokenizer = make_tokenizer(vocab)
        # the model's script: the checkpoint's record (see TextGenerator), else its vocabulary's
        self.script = script if script is not None else model_script({}, vocab)
        self.max_batch, self.max_queue, self.on_step = max_batch, max_queue, on_step
        self._lock = threading.Lock()
        self._waiting: deque[Request] = deque()
        self._active: list[Sample] = []
        self._state: State | None = None  # rows aligned with self._active
        self._in_flight = 0
        self._ids = itertools.count(1)
        self.constraints = constraints or Constraints(vocab, self.to_model_text)

    def to_model_text(self, text: str) -> str:
        """Text as the model reads it: in its script, normalised (prompts, choices, heads)."""
        return self.normalize(to_model_script(text, self.script, self.vocab))

    # ------------------------------------------------------------ submission (any thread)
    def request(
        self,
        prompt: str,
        config: GenerationConfig,
        sink: Sink | None = None,
        stream: bool = False,
        max_prompt_tokens: int | None = None,
        rid: str | None = None,
        timeout: float | None = None,
        queue_timeout: float | None = None,
    ) -> Request:
        """Normalise and encode a prompt the checkpoint's way; raise PromptError if unusable.

        A prompt or stop string in the other Chinese script is first converted to the model's;
        a prompt of just ``"\n"`` starts a new text (the model reads its paragraph mark).
        ``rid`` names the request (default ``gen-<n>``). After ``timeout`` seconds generation
        stops, finish_reason "timeout", text so far kept; a request still waiting for a batch
        slot after ``queue_timeout`` seconds gets Expired instead. A regex, choice or form is
        compiled here (cached), and logit_bias keys are looked up: FieldError names the field
        this model cannot use.
        """
        script = output_script(config.script, prompt, self.script)
        # a prompt of just the paragraph mark starts a fresh text (normalising would drop it)
        text = (
            PARAGRAPH
            if prompt == PARAGRAPH and PARAGRAPH in self.vocab
            else self.to_model_text(prompt)
        )
        if not text:
            raise PromptError(f"prompt is empty after normalisation, got {prompt[:40]!r}")
        ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise PromptError(f"prompt must be at most {max_prompt_tokens} tokens, got {len(ids)}")
        unknown = int(np.count_nonzero(ids == self.vocab.unk_id))
        stop = tuple(to_model_script(s, self.script, self.vocab) for s in config.stop)
        if stop != config.stop:
            config = dataclasses.replace(config, stop=stop)
        rid = rid if rid is not None else f"gen-{next(self._ids)}"
        constraint = self.constraints.for_config(config)
        bias = bias_tensors(self.vocab, config.logit_bias) if config.logit_bias else None
        return Request(
            rid,
            text,
            ids,
            unknown,
            config,
            sink,
            stream,
            script,
            convert=script != self.script,
            timeout=timeout,
            queue_timeout=queue_timeout,
            constraint=constraint,
            bias=bias,
        )

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
        self._expire(events)
        prefilled = self._admit(events)  # tokens drawn from the new prompts' prefills
        batch = len(self._active)
        if batch:
            ids = torch.tensor([s.last for s in self._active])  # (B,)
            assert self._state is not None  # admitted rows always carry a state
            logp, self._state = self.decoder.step(ids, self._state)  # (B, V)
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

    def _expire(self, events: dict[Request, list[Event]]) -> None:
        """Past their deadlines: waiting requests get Expired, active ones finish "timeout"."""
        now = time.perf_counter()
        with self._lock:
            late = [r for r in self._waiting if r.start_by is not None and now >= r.start_by]
            for r in late:
                self._waiting.remove(r)
                self._in_flight -= 1
        for req in late:
            req.finished, req.t_end = True, now
            events.setdefault(req, []).append(Expired(now - req.t_submit))
        over = {s.request for s in self._active if now >= (s.request.deadline or math.inf)}
        for req in over:
            for s in req.samples:
                if not s.finish_reason:
                    s.finish_reason = "timeout"
                    if req.stream and (chunk := s.take_chunk()) is not None:
                        events.setdefault(req, []).append(chunk)  # the text held back so far
            self._finish(req, events)
        if over:
            self._compact()

    def _admit(self, events: dict[Request, list[Event]]) -> int:
        admitted = 0
        while self._waiting:
            req = self._waiting[0]
            room = self.max_batch - len(self._active)
            if self._active and req.config.samples > room:
                break  # FIFO: it waits for rows to free up; a lone big request always fits
            with self._lock:
                self._waiting.popleft()
            self._prefill(req, events)
            admitted += req.config.samples
        return admitted

    def _prefill(self, req: Request, events: dict[Request, list[Event]]) -> None:
        req.t_admit = time.perf_counter()
        n = req.config.samples
        ids = torch.from_numpy(req.ids)  # (T,)
        if req.config.echo:
            req.prompt_logprobs = score_prompt(self.model, self.tokenizer, req)
        req.samples = [Sample(req, i) for i in range(n)]
        if req.config.max_new_tokens == 0:  # scoring only: nothing to draw
            for s in req.samples:
                s.finish_reason = "length"
            req.t_first = time.perf_counter()
            self._finish(req, events)
            return
        logp, state = self.decoder.prefill(ids)
        self._advance(req.samples, logp.expand(n, -1), events)  # first token of each sample
        req.t_first = time.perf_counter()
        state = states.select(state, [0] * n)  # (L, n, H): samples share the prompt
        self._active.extend(req.samples)
        self._state = state if self._state is None else states.stack([self._state, state])
        self._compact()

    def _advance(
        self, samples: Sequence[Sample], logp: Tensor, events: dict[Request, list[Event]]
    ) -> None:
        """Draw one token per sample from logp (B, V) and record what it emits."""
        rows = [
            RowParams(s.request.config, s.recent, s.rng.random(), s.allowed(), s.request.bias)
            for s in samples
        ]
        drawn = sample_next(logp, rows, banned=(self.vocab.unk_id,))  # (B,)
        tokens = drawn.tolist()
        configs = [s.request.config for s in samples]
        lps = token_logprobs(logp, tokens, configs, self.vocab.tokens)
        if any(c.best_of is not None for c in configs):  # each sample's running score
            chosen = logp.gather(1, drawn[:, None])[:, 0].tolist()  # (B,)
            for s, value in zip(samples, chosen, strict=True):
                s.score += value
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
        self._state = states.select(self._state, keep) if keep and self._state is not None else None

    @staticmethod
    def _deliver(events: dict[Request, list[Event]]) -> None:
        for req, evs in events.items():
            if req.sink is not None:
                req.sink(evs)
