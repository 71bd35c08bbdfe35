"""The pydantic request models, every parameter bounded, and the one way to a GenerationConfig.

Sampling bounds come from :data:`textgen.inference.limits.BOUNDS`, the table that
``GenerationConfig`` validates against, so the HTTP API and the core cannot disagree. The
limits that an operator sets (prompt length, ``max_new_tokens``, ``n``) become bounds in the
request models themselves (:func:`request_models`), so the OpenAPI schema documents the limits
a server actually enforces and FastAPI answers 422 with the field and the value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from textgen.inference.limits import BOUNDS, MAX_STOP_CHARS, MAX_STOP_STRINGS
from textgen.inference.sampling import GenerationConfig
from textgen.server.settings import Settings

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


def bounded(
    name: str, default: Any, description: str | None = None, high: float | None = None
) -> Any:
    """A ``Field`` bounded by ``BOUNDS[name]`` (``high``: a server limit below its top)."""
    return Field(default, description=description, **BOUNDS[name].field(high))


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

    ``CORE_NAMES`` maps a field to the ``GenerationConfig`` field it sets when the names differ.
    """

    CORE_NAMES: ClassVar[dict[str, str]] = {}
    stream: bool = Field(False, description="answer with Server-Sent Events")
    timeout: float | None = Field(
        None,
        gt=0,
        description="seconds for the whole request, capped by the server's "
        "request_timeout; then generation stops with finish_reason timeout, text kept",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _json_types(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None  # a field validator always has one
        kinds = _kinds(cls.model_fields[info.field_name].annotation)
        if not kinds or value is None:
            return value
        if kinds == {bool} and not isinstance(value, bool):
            raise ValueError(f"{info.field_name} must be true or false")
        if kinds <= {int, float} and isinstance(value, (bool, str)):
            raise ValueError(f"{info.field_name} must be a number")
        return value

    @field_validator("stop", check_fields=False)
    @classmethod
    def _stop_text(cls, v: str | list[str] | None) -> str | list[str] | None:
        for s in _stops(v):
            _check_text("stop", s)
        return v

    def core_values(self) -> dict[str, Any]:
        """The fields under ``GenerationConfig``'s names (the others are ignored there)."""
        return {self.CORE_NAMES.get(k, k): v for k, v in self.model_dump().items()}


class GenerateRequest(JsonRequest):
    """`POST /v1/generate`. Unknown fields are refused so that a typo is not ignored."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="text to continue (normalised as in training)")
    max_new_tokens: int = bounded("max_new_tokens", 200, "generate at most this many characters")
    temperature: float = bounded("temperature", 1.0, "0 = greedy")
    top_k: int = bounded("top_k", 0, "keep the k likeliest (0 = off)")
    top_p: float = bounded("top_p", 1.0, "nucleus mass (1 = off)")
    repetition_penalty: float = bounded("repetition_penalty", 1.0, "1 = off")
    repetition_window: int = bounded("repetition_window", 64, "tokens the penalty looks back")
    stop: StopField = Field(None, description="stop before any of these strings")
    seed: int | None = bounded("seed", None, "same seed, same text")
    n: int = bounded("n", 1, "independent samples")
    logprobs: bool = Field(False, description="return each character's log-probability")
    top_logprobs: int = bounded("top_logprobs", 0, "alternatives per char")
    script: Script = Field("auto", description=SCRIPT_HELP)

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, v: str) -> str:
        return _check_prompt(v)


class CompletionRequest(JsonRequest):
    """`POST /v1/completions`: the OpenAI subset. Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    # OpenAI's names; ``logprobs: k`` asks for log-probs with k alternatives each
    CORE_NAMES: ClassVar[dict[str, str]] = {
        "max_tokens": "max_new_tokens",
        "logprobs": "top_logprobs",
    }

    model: str | None = Field(None, max_length=200, description="any name: one model is served")
    prompt: str | list[str] = Field(description="a string, or a list holding one string")
    max_tokens: int = bounded("max_new_tokens", 16)
    temperature: float = bounded("temperature", 1.0)
    top_p: float = bounded("top_p", 1.0)
    n: int = bounded("n", 1)
    stop: StopField = None
    seed: int | None = bounded("seed", None)
    logprobs: int | None = bounded("top_logprobs", None)
    top_k: int = bounded("top_k", 0, "textgen extension")
    repetition_penalty: float = bounded("repetition_penalty", 1.0, "textgen extension")
    script: Script = Field("auto", description="textgen extension. " + SCRIPT_HELP)

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, v: str | list[str]) -> str | list[str]:
        for p in [v] if isinstance(v, str) else v:
            _check_prompt(p)
        return v

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def core_values(self) -> dict[str, Any]:
        return {**super().core_values(), "logprobs": self.logprobs is not None}


def to_config(body: JsonRequest) -> GenerationConfig:
    """The one place where a request becomes a ``GenerationConfig``."""
    return GenerationConfig.from_fields(body.core_values())


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
    most, n = s.max_new_tokens, s.max_n
    gen = create_model(
        "GenerateRequest",
        __base__=GenerateRequest,
        prompt=(prompt, Field(description="text to continue (normalised as in training)")),
        max_new_tokens=(
            int,
            bounded("max_new_tokens", min(200, most), "at most this many chars", most),
        ),
        n=(int, bounded("n", 1, "independent samples", n)),
    )
    one_prompt = Annotated[list[prompt], Field(min_length=1, max_length=1)]
    comp = create_model(
        "CompletionRequest",
        __base__=CompletionRequest,
        prompt=(prompt | one_prompt, Field(description="a string, or a list of one string")),
        max_tokens=(int, bounded("max_new_tokens", min(16, most), None, most)),
        n=(int, bounded("n", 1, None, n)),
    )
    return gen, comp
