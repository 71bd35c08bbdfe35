"""The pydantic response models, and the builders that fill them from the engine's results.

Every answer the server sends (a JSON body, each Server-Sent Event, `textgen generate --json`)
is one of these models, so what goes out is what the OpenAPI schema documents.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from textgen.inference.events import Chunk, FinishReason, GenerationResult, TokenLogprob


class TokenInfo(BaseModel):
    token: str
    logprob: float | None = Field(description="None only for a prompt's first token")
    offset: int = Field(description="char offset of the token in the choice's text")
    top: dict[str, float] | None = Field(
        None, description="the likeliest vocabulary tokens, in the model's script"
    )


class Choice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    tokens: int = Field(description="tokens generated, a matched stop string included")
    logprobs: list[TokenInfo] | None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Usage(CompletionUsage):
    """OpenAI's usage counts plus the prompt characters that fell outside the vocabulary."""

    unknown_prompt_chars: int = Field(0, description="prompt chars outside the vocabulary")


class Timing(BaseModel):
    queue_ms: float
    prefill_ms: float
    decode_ms: float
    total_ms: float
    chars_per_s: float


class GenerateResponse(BaseModel):
    id: str = Field(description="the request id (X-Request-Id)")
    model: str
    prompt: str = Field(description="the prompt as the model read it: in its script, normalised")
    script: str = Field(description="the script of the text: what auto chose (unknown: as is)")
    text: str = Field(description="choices[0].text")
    finish_reason: FinishReason = Field(description="choices[0].finish_reason")
    choices: list[Choice]
    usage: Usage
    timing: Timing
    prompt_logprobs: list[TokenInfo] | None = Field(
        None, description="with echo: each prompt token's log-probability given those before it"
    )


class ChunkEvent(BaseModel):
    """A `chunk` event of a `/v1/generate` stream: new text of sample ``index``."""

    index: int
    text: str
    logprobs: list[TokenInfo] | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
    detail: list[dict[str, Any]] | None = None


class Health(BaseModel):
    status: Literal["ok", "draining"] = "ok"
    model: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "textgen"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class CompletionChunk(BaseModel):
    """One event of a `/v1/completions` stream (OpenAI's shape; no usage)."""

    id: str = Field(description="the request id (X-Request-Id)")
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]


class CompletionResponse(CompletionChunk):
    usage: CompletionUsage | None = None


# ------------------------------------------------------------------------ builders


def _tokens(lps: list[TokenLogprob] | None) -> list[TokenInfo] | None:
    if lps is None:
        return None
    return [TokenInfo(token=t.token, logprob=t.logprob, offset=t.offset, top=t.top) for t in lps]


def generate_response(r: GenerationResult, model: str) -> GenerateResponse:
    """The `/v1/generate` body (also the final SSE event) for a finished request."""
    choices = [
        Choice(
            index=s.index,
            text=s.text,
            finish_reason=s.finish_reason,
            tokens=s.tokens,
            logprobs=_tokens(s.logprobs),
        )
        for s in r.samples
    ]
    usage = Usage(
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        total_tokens=r.prompt_tokens + r.completion_tokens,
        unknown_prompt_chars=r.unknown_prompt_chars,
    )
    return GenerateResponse(
        id=r.id,
        model=model,
        prompt=r.prompt,
        script=r.script,
        text=r.text,
        finish_reason=r.finish_reason,
        choices=choices,
        usage=usage,
        timing=Timing(**r.timing),
        prompt_logprobs=_tokens(r.prompt_logprobs),
    )


def chunk_event(c: Chunk) -> ChunkEvent:
    return ChunkEvent(index=c.index, text=c.text, logprobs=_tokens(c.logprobs))


def error_event(message: str) -> ErrorResponse:
    """The event that ends a stream when the engine failed under it."""
    return ErrorResponse(error=ErrorBody(message=message, type="server_error"))


def openai_logprobs(
    lps: list[TokenLogprob] | None, base: int, prompt: list[TokenLogprob] | None = None
) -> CompletionLogprobs | None:
    """Legacy completions shape; ``base`` (the prompt length) starts ``text_offset``. With
    echo, the ``prompt``'s tokens come first (the first has no log-prob: null, as OpenAI)."""
    if lps is None:
        return None
    head = prompt or []
    return CompletionLogprobs(
        tokens=[t.token for t in head] + [t.token for t in lps],
        token_logprobs=[t.logprob for t in head] + [t.logprob for t in lps],
        top_logprobs=[None if t.logprob is None else t.top or {} for t in head]
        + [t.top or {} for t in lps],
        text_offset=[t.offset for t in head] + [base + t.offset for t in lps],
    )


def completion_response(r: GenerationResult, model: str, created: int) -> CompletionResponse:
    """OpenAI's body; with echo, each choice's text starts with the prompt as the model read
    it (normalised) and its log-probs with the prompt's."""
    base, echo = len(r.prompt), r.prompt_logprobs is not None
    choices = [
        CompletionChoice(
            text=(r.prompt if echo else "") + s.text,
            index=s.index,
            finish_reason=s.finish_reason,
            logprobs=openai_logprobs(s.logprobs, base, r.prompt_logprobs),
        )
        for s in r.samples
    ]
    usage = CompletionUsage(
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        total_tokens=r.prompt_tokens + r.completion_tokens,
    )
    return CompletionResponse(id=r.id, created=created, model=model, choices=choices, usage=usage)


def completion_chunk(
    rid: str, model: str, created: int, choice: CompletionChoice
) -> CompletionChunk:
    return CompletionChunk(id=rid, created=created, model=model, choices=[choice])
