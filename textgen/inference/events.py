"""What generation produces: tokens with their log-probabilities, samples, results, and the
events a request's sink receives (Chunk ... then Done, Failed or Expired)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["length", "stop", "timeout", "cancelled"]


@dataclass
class TokenLogprob:
    """A token, its model log-probability, its char offset, the top alternatives. A prompt's
    first token has no context and no log-probability (None)."""

    token: str
    logprob: float | None
    offset: int
    top: dict[str, float] | None = None


@dataclass
class SampleResult:
    """One of a request's ``n`` samples. ``tokens`` counts every generated token."""

    index: int
    text: str
    finish_reason: FinishReason  # "timeout": the request's deadline
    tokens: int
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationResult:
    """A finished request: normalised prompt, counts, samples and timings (milliseconds).

    ``prompt`` is what the model read (normalised, in the model's script); ``script`` is the
    script of the samples' text ("unknown" when no conversion applies).
    """

    id: str
    prompt: str
    prompt_tokens: int
    unknown_prompt_chars: int
    samples: list[SampleResult]
    timing: dict[str, float]
    script: str = "unknown"
    prompt_logprobs: list[TokenLogprob] | None = None  # with echo: every prompt token

    @property
    def text(self) -> str:
        return self.samples[0].text if self.samples else ""

    @property
    def finish_reason(self) -> FinishReason:
        return self.samples[0].finish_reason if self.samples else "cancelled"

    @property
    def completion_tokens(self) -> int:
        return sum(s.tokens for s in self.samples)


@dataclass
class Chunk:
    """Newly generated text of sample ``index`` (streaming), with its tokens' log-probs."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Done:
    """The request is finished; the last event it gets."""

    result: GenerationResult


@dataclass
class Failed:
    """The engine hit an unexpected error; the request is over."""

    message: str


@dataclass
class Expired:
    """The request waited for a batch slot past its start deadline and never started."""

    waited_s: float


Event = Chunk | Done | Failed | Expired
