"""The pydantic request models, every parameter bounded, and the one way to a GenerationConfig.

The sampling fields are built from :data:`textgen.inference.limits.PARAMS`, the declaration
that ``GenerationConfig`` and `textgen generate` read too (defaults, bounds, help), so the
HTTP API and the core cannot disagree. The
limits that an operator sets (prompt length, ``max_new_tokens``, ``n``) become bounds in the
request models themselves (:func:`request_models`), so the OpenAPI schema documents the limits
a server actually enforces and FastAPI answers 422 with the field and the value.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from textgen.inference.limits import (
    BOUNDS,
    MAX_ACROSTIC,
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    MAX_LOGIT_BIAS_KEYS,
    MAX_PATTERN_CHARS,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    PARAMS,
    ParamError,
)
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


# Each sampling parameter's pydantic type; defaults, bounds and help come from PARAMS.
ChoiceString = Annotated[str, Field(min_length=1, max_length=MAX_CHOICE_CHARS)]
TYPES: dict[str, Any] = {
    "max_new_tokens": int,
    "temperature": float,
    "top_k": int,
    "top_p": float,
    "repetition_penalty": float,
    "repetition_window": int,
    "stop": StopField,
    "seed": int | None,
    "n": int,
    "best_of": int | None,
    "logprobs": bool,
    "top_logprobs": int,
    "echo": bool,
    "logit_bias": Annotated[dict[str, float], Field(max_length=MAX_LOGIT_BIAS_KEYS)] | None,
    "regex": Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)] | None,
    "choice": Annotated[list[ChoiceString], Field(min_length=1, max_length=MAX_CHOICES)] | None,
    "form": Annotated[str, Field(min_length=1, max_length=20)] | None,
    "acrostic": Annotated[str, Field(min_length=1, max_length=MAX_ACROSTIC)] | None,
    "script": Script,
}
# /v1/completions: OpenAI's own ``logprobs`` (an int: alternatives per token) stands for
# textgen's top_logprobs and logprobs together, so those two are not fields of their own.
OPENAI_SKIP = ("logprobs", "top_logprobs")


def param_fields(openai: bool, limits: dict[str, int] | None = None) -> dict[str, Any]:
    """The request-model fields of every parameter in PARAMS: ``{name: (type, Field)}``.

    ``openai``: under OpenAI's names and defaults. ``limits``: a server's upper bounds.
    """
    out: dict[str, Any] = {}
    for name, p in PARAMS.items():
        if openai and name in OPENAI_SKIP:
            continue
        default = p.openai_default if openai and p.openai_default is not None else p.default
        if default is not None and limits and name in limits:
            default = min(default, limits[name])
        extra = p.bound.field((limits or {}).get(name)) if p.bound is not None else {}
        default = list(default) if isinstance(default, tuple) else default
        field = Field(None if default == [] else default, description=p.help, **extra)
        out[(p.openai if openai and p.openai else name)] = (TYPES[name], field)
    return out


class GenerateBody(JsonRequest):
    """`POST /v1/generate`. Unknown fields are refused so that a typo is not ignored."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="text to continue (normalised as in training)")

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, v: str) -> str:
        return _check_prompt(v)


GenerateRequest = create_model(
    "GenerateRequest", __base__=GenerateBody, **param_fields(openai=False)
)


class CompletionBody(JsonRequest):
    """`POST /v1/completions`: the OpenAI subset, vLLM's guided_regex / guided_choice and
    textgen's own parameters. An OpenAI field that textgen does not implement is a 422
    naming it; only harmless ones are accepted (``user``; penalties at their neutral 0)."""

    model_config = ConfigDict(extra="forbid")
    CORE_NAMES: ClassVar[dict[str, str]] = {
        **{p.openai: name for name, p in PARAMS.items() if p.openai},
        "logprobs": "top_logprobs",  # OpenAI's ``logprobs: k`` asks for k alternatives
    }

    model: str | None = Field(None, max_length=200, description="any name: one model is served")
    prompt: str | list[str] = Field(description="a string, or a list holding one string")
    logprobs: int | None = bounded("top_logprobs", None, "log-probs with this many alternatives")
    user: str | None = Field(
        None, max_length=256, description="OpenAI's end-user id: accepted, not used"
    )
    presence_penalty: float = Field(
        0.0, ge=0.0, le=0.0, description="only 0: textgen offers repetition_penalty instead"
    )
    frequency_penalty: float = Field(
        0.0, ge=0.0, le=0.0, description="only 0: textgen offers repetition_penalty instead"
    )

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
        values = super().core_values()
        values["logprobs"] = self.logprobs is not None
        values["top_logprobs"] = self.logprobs or 0
        return values


CompletionRequest = create_model(
    "CompletionRequest", __base__=CompletionBody, **param_fields(openai=True)
)


def to_config(body: JsonRequest) -> GenerationConfig:
    """The one place where a request becomes a ``GenerationConfig``: ParamError (a 422) for
    what the fields' own bounds cannot say (best_of below n, a regex with a form, ...), and
    for what a stream cannot carry."""
    config = GenerationConfig.from_fields(body.core_values())
    if body.stream and config.best_of is not None and config.best_of > config.n:
        raise ParamError(
            "best_of", "best_of > n cannot stream: the best samples are known at the end"
        )
    if body.stream and config.echo:
        raise ParamError(
            "echo", "echo cannot stream: ask for the prompt's log-probs without stream"
        )
    return config


def request_models(s: Settings) -> tuple[type[JsonRequest], type[JsonRequest]]:
    """The request models with this server's limits as schema bounds."""
    prompt = Annotated[
        str,
        Field(
            min_length=1,
            max_length=s.max_prompt_chars,
            json_schema_extra={"pattern": PROMPT_PATTERN},
        ),
    ]
    limits = {"max_new_tokens": s.max_new_tokens, "n": s.max_n, "best_of": s.max_n}
    gen = create_model(
        "GenerateRequest",
        __base__=GenerateBody,
        prompt=(prompt, Field(description="text to continue (normalised as in training)")),
        **param_fields(openai=False, limits=limits),
    )
    one_prompt = Annotated[list[prompt], Field(min_length=1, max_length=1)]
    comp = create_model(
        "CompletionRequest",
        __base__=CompletionBody,
        prompt=(prompt | one_prompt, Field(description="a string, or a list of one string")),
        **param_fields(openai=True, limits=limits),
    )
    return gen, comp
