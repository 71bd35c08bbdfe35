"""The pydantic request/response models, every parameter bounded.

The limits that an operator sets (prompt length, ``max_new_tokens``, ``n``) become bounds in
the request models themselves (:func:`request_models`), so the OpenAPI schema documents the
limits a server actually enforces and FastAPI answers 422 with the field and the value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
)

from textgen.inference.sampling import (
    MAX_STOP_STRINGS,
    MAX_TOP_LOGPROBS,
    Chunk,
    GenerationConfig,
    GenerationResult,
    TokenLogprob,
)
from textgen.server.settings import Settings

MAX_STOP_CHARS = 32
# 2**53 - 1: the largest integer a JSON number (a double) holds exactly, so a schema-valid
# seed from any client (or fuzzer) is never rounded past the bound.
MAX_SEED = 2**53 - 1


# ------------------------------------------------------------------------ requests

# NUL bytes are refused (see _check_text); the schema says so, so clients and fuzzers know.
NO_NUL = r"^[^\x00]*$"
StopString = Annotated[
    str, Field(min_length=1, max_length=MAX_STOP_CHARS, json_schema_extra={"pattern": NO_NUL})
]
StopField = StopString | Annotated[list[StopString], Field(max_length=MAX_STOP_STRINGS)] | None

# textgen.data.script.SCRIPTS as a type, so the schema lists the values and others get 422
Script = Literal["auto", "simplified", "traditional"]
SCRIPT_HELP = (
    "Chinese script of the output: auto (the prompt's; the model's when the prompt shows "
    "neither), simplified or traditional. Prompts and stop strings in either script are "
    "accepted."
)


# A prompt must hold a character that survives normalisation (not a space, control or
# zero-width character); the schema publishes the same rule as a pattern.
VISIBLE = r"[^\x00-\x20\x7f-\x9f\u00ad\u200b-\u200d\u2028\u2029\u2060\u3000\ufeff]"
_VISIBLE = re.compile(VISIBLE)
PROMPT_PATTERN = rf"^[^\x00]*{VISIBLE}[^\x00]*$"  # a visible character and no NUL anywhere


def _check_prompt(value: str) -> str:
    _check_text("prompt", value)
    if not _VISIBLE.search(value):
        raise ValueError("prompt must contain a visible character, not only spaces or controls")
    return value


def _check_text(name: str, value: str) -> str:
    # Rejected before normalisation: the normaliser would silently drop a NUL.
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must not contain lone surrogates") from None
    return value


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def _kinds(annotation: Any) -> set[type]:
    """The JSON scalar types a field accepts: int | None -> {int}."""
    args = get_args(annotation) or (annotation,)
    return {a for a in args if a in (int, float, bool, str)}


class JsonRequest(BaseModel):
    """Numbers must be JSON numbers and flags JSON booleans.

    Pydantic's lax mode would read ``"5"`` or ``true`` as 5 and ``"yes"`` as true; a client
    sending those has a bug that a 422 should show. (An integral float such as 7.0 is still
    an integer, as JSON Schema says.)
    """

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        kinds = _kinds(cls.model_fields[info.field_name].annotation)
        if not kinds or value is None:
            return value
        if kinds == {bool} and not isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be true or false")
        if kinds <= {int, float} and isinstance(value, (bool, str)):
            raise ValueError(f"{info.field_name} must be a number")
        return value


class GenerateRequest(JsonRequest):
    """`POST /v1/generate`. Unknown fields are refused so that a typo is not ignored."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="text to continue (normalised as in training)")
    max_new_tokens: int = Field(200, ge=1, description="generate at most this many characters")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_k: int = Field(0, ge=0, le=100_000, description="keep the k likeliest (0 = off)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus mass (1 = off)")
    repetition_penalty: float = Field(1.0, ge=1.0, le=5.0, description="1 = off")
    repetition_window: int = Field(64, ge=0, le=1024, description="tokens the penalty looks back")
    stop: StopField = Field(None, description="stop before any of these strings")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="same seed, same text")
    n: int = Field(1, ge=1, description="independent samples")
    logprobs: bool = Field(False, description="return each character's log-probability")
    top_logprobs: int = Field(0, ge=0, le=MAX_TOP_LOGPROBS, description="alternatives per char")
    script: Script = Field("auto", description=SCRIPT_HELP)
    stream: bool = Field(False, description="answer with Server-Sent Events")

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, v: str) -> str:
        return _check_prompt(v)

    @field_validator("stop")
    @classmethod
    def _stop_text(cls, v: str | list[str] | None) -> str | list[str] | None:
        for s in _stops(v):
            _check_text("stop", s)
        return v

    def to_config(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
            top_p=self.top_p, repetition_penalty=self.repetition_penalty,
            repetition_window=self.repetition_window, stop=_stops(self.stop), seed=self.seed,
            n=self.n, logprobs=self.logprobs, top_logprobs=self.top_logprobs, script=self.script,
        )  # fmt: skip


class CompletionRequest(JsonRequest):
    """`POST /v1/completions`: the OpenAI subset. Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=200, description="any name: one model is served")
    prompt: str | list[str] = Field(description="a string, or a list holding one string")
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stop: StopField = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stream: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    top_k: int = Field(0, ge=0, le=100_000, description="textgen extension")
    repetition_penalty: float = Field(1.0, ge=1.0, le=5.0, description="textgen extension")
    script: Script = Field("auto", description="textgen extension. " + SCRIPT_HELP)

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, v: str | list[str]) -> str | list[str]:
        for p in [v] if isinstance(v, str) else v:
            _check_prompt(p)
        return v

    @field_validator("stop")
    @classmethod
    def _stop_text(cls, v: str | list[str] | None) -> str | list[str] | None:
        for s in _stops(v):
            _check_text("stop", s)
        return v

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_config(self) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_tokens, temperature=self.temperature, top_k=self.top_k,
            top_p=self.top_p, repetition_penalty=self.repetition_penalty, stop=_stops(self.stop),
            seed=self.seed, n=self.n, logprobs=self.logprobs is not None,
            top_logprobs=self.logprobs or 0, script=self.script,
        )  # fmt: skip


def request_models(s: Settings) -> tuple[type[GenerateRequest], type[CompletionRequest]]:
    """The request models with this server's limits as schema bounds."""
    prompt = Annotated[
        str,
        Field(
            min_length=1,
            max_length=s.max_prompt_chars,
            json_schema_extra={"pattern": PROMPT_PATTERN},
        ),
    ]
    gen = create_model(
        "GenerateRequest",
        __base__=GenerateRequest,
        prompt=(prompt, Field(description="text to continue (normalised as in training)")),
        max_new_tokens=(int, Field(200 if s.max_new_tokens >= 200 else s.max_new_tokens, ge=1,
                                   le=s.max_new_tokens, description="at most this many chars")),
        n=(int, Field(1, ge=1, le=s.max_n, description="independent samples")),
    )  # fmt: skip
    one_prompt = Annotated[list[prompt], Field(min_length=1, max_length=1)]
    comp = create_model(
        "CompletionRequest",
        __base__=CompletionRequest,
        prompt=(prompt | one_prompt, Field(description="a string, or a list of one string")),
        max_tokens=(int, Field(min(16, s.max_new_tokens), ge=1, le=s.max_new_tokens)),
        n=(int, Field(1, ge=1, le=s.max_n)),
    )
    return gen, comp


# ------------------------------------------------------------------------ responses


class TokenInfo(BaseModel):
    token: str
    logprob: float
    offset: int = Field(description="char offset of the token in the choice's text")
    top: dict[str, float] | None = Field(
        None, description="the likeliest vocabulary tokens, in the model's script"
    )


class Choice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["length", "stop", "cancelled"]
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
    id: str
    model: str
    prompt: str = Field(description="the prompt as the model read it: in its script, normalised")
    script: str = Field(description="the script of the text: what auto chose (unknown: as is)")
    text: str = Field(description="choices[0].text")
    finish_reason: str = Field(description="choices[0].finish_reason")
    choices: list[Choice]
    usage: Usage
    timing: Timing


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
    detail: list[dict[str, Any]] | None = None


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
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None


# ------------------------------------------------------------------------ builders


def _token_dicts(lps: list[TokenLogprob] | None) -> list[dict[str, Any]] | None:
    if lps is None:
        return None
    return [{"token": t.token, "logprob": t.logprob, "offset": t.offset, "top": t.top} for t in lps]


def generate_response(r: GenerationResult, model: str) -> dict[str, Any]:
    """The `/v1/generate` body (also the final SSE event) for a finished request."""
    choices = [
        {"index": s.index, "text": s.text, "finish_reason": s.finish_reason, "tokens": s.tokens,
         "logprobs": _token_dicts(s.logprobs)}
        for s in r.samples
    ]  # fmt: skip
    usage = {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
             "total_tokens": r.prompt_tokens + r.completion_tokens,
             "unknown_prompt_chars": r.unknown_prompt_chars}  # fmt: skip
    return {"id": r.id, "model": model, "prompt": r.prompt, "script": r.script, "text": r.text,
            "finish_reason": r.finish_reason, "choices": choices, "usage": usage,
            "timing": r.timing}  # fmt: skip


def chunk_event(c: Chunk) -> dict[str, Any]:
    return {"index": c.index, "text": c.text, "logprobs": _token_dicts(c.logprobs)}


def openai_logprobs(lps: list[TokenLogprob] | None, base: int) -> dict[str, Any] | None:
    """Legacy completions shape; ``base`` (the prompt length) starts ``text_offset``."""
    if lps is None:
        return None
    tops = [t.top or {} for t in lps]
    return {"tokens": [t.token for t in lps], "token_logprobs": [t.logprob for t in lps],
            "top_logprobs": tops, "text_offset": [base + t.offset for t in lps]}  # fmt: skip


def completion_response(r: GenerationResult, model: str, created: int) -> dict[str, Any]:
    base = len(r.prompt)
    choices = [
        {"text": s.text, "index": s.index, "finish_reason": s.finish_reason,
         "logprobs": openai_logprobs(s.logprobs, base)}
        for s in r.samples
    ]  # fmt: skip
    usage = {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
             "total_tokens": r.prompt_tokens + r.completion_tokens}  # fmt: skip
    return {"id": f"cmpl-{r.id}", "object": "text_completion", "created": created,
            "model": model, "choices": choices, "usage": usage}  # fmt: skip


def completion_chunk(rid: str, model: str, created: int, index: int, text: str,
                     logprobs: dict[str, Any] | None, finish: str | None) -> dict[str, Any]:  # fmt: skip
    choice = {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}
    return {"id": f"cmpl-{rid}", "object": "text_completion", "created": created,
            "model": model, "choices": [choice]}  # fmt: skip
