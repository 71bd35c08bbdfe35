"""The HTTP service's settings: ``TEXTGEN_*`` environment variables, then `textgen serve` flags.

:class:`Settings` is the one list of them: `textgen serve` makes a ``--flag`` of every field
(its description is the flag's help), and ``TEXTGEN_<FIELD>`` sets the same field from the
environment. A flag given on the command line wins over the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "TEXTGEN_"
LIMIT: JsonDict = {
    "limit": True
}  # a field that `GET /v1/model` and the OpenAPI description publish


class SettingsError(ValueError):
    """A setting with a bad value; the message names the variable or flag and the value."""


class Settings(BaseSettings):
    """Server settings: ``TEXTGEN_<FIELD>`` environment variables, then `textgen serve` flags.

    ``max_queue`` bounds the requests in flight (waiting + being generated) before 429;
    ``max_batch`` bounds the sequences advanced together in one step (1 = no batching).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", validate_default=True
    )

    checkpoint: str | None = Field(
        None, description="checkpoint file or run folder", json_schema_extra={"metavar": "PATH"}
    )
    host: str = Field("127.0.0.1", description="interface to bind (127.0.0.1: this machine only)")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    max_batch: int = Field(
        64,
        ge=1,
        description="sequences per batched step (1 = no batching)",
        json_schema_extra=LIMIT,
    )
    max_queue: int = Field(
        256, ge=1, description="requests in flight before 429", json_schema_extra=LIMIT
    )
    max_prompt_chars: int = Field(
        2000, ge=1, description="longest prompt accepted", json_schema_extra=LIMIT
    )
    max_new_tokens: int = Field(
        1000, ge=1, description="largest max_new_tokens a request may ask", json_schema_extra=LIMIT
    )
    max_n: int = Field(8, ge=1, description="most samples per request", json_schema_extra=LIMIT)
    max_body_bytes: int = Field(
        65536, ge=1, description="largest request body", json_schema_extra=LIMIT
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="comma-separated origins allowed by CORS",
        json_schema_extra={"metavar": "ORIGINS"},
    )
    threads: int = Field(0, ge=0, description="torch CPU threads (0: all cores but one)")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        "auto",
        description="decode steps: auto (int8 where the CPU has an int8 engine, else bf16 "
        "where bf16 GEMMs pay, else fp32), or one of them",
    )
    shutdown_timeout: float = Field(
        30.0, gt=0, description="seconds to finish requests in flight on SIGTERM"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="least severe log lines shown"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as text, or one JSON object per line"
    )
    request_timeout: float = Field(
        300.0,
        gt=0,
        description="seconds a request may take in all; generation then stops "
        "with finish_reason timeout, keeping the text so far",
    )
    queue_timeout: float = Field(
        30.0, gt=0, description="seconds a request may wait for a batch slot before 503"
    )
    # A secret: no flag (the command line shows in `ps`), never in repr or an error message.
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (), repr=False, description="comma-separated API keys", json_schema_extra={"flag": False}
    )
    api_key_file: str | None = Field(
        None, description="file of API keys, one per line", json_schema_extra={"metavar": "FILE"}
    )
    metrics_auth: bool = Field(False, description="/metrics needs an API key too")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise SettingsError(_explain(e, set(values))) from None

    @field_validator("cors_origins", "api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read ``TEXTGEN_*`` variables; non-None ``overrides`` (command-line flags) win."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    def keys(self) -> tuple[str, ...]:
        """The API keys: ``api_keys`` and the lines of ``api_key_file`` (# starts a comment)."""
        keys = list(self.api_keys)
        if self.api_key_file:
            try:
                text = Path(self.api_key_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise SettingsError(
                    f"api_key_file: cannot read {self.api_key_file!r}: {e}"
                ) from None
            found = [ln.split("#")[0].strip() for ln in text.splitlines()]
            if not any(found):
                raise SettingsError(f"api_key_file: no keys in {self.api_key_file!r}")
            keys += [k for k in found if k]
        for k in keys:
            if any(c.isspace() or not c.isprintable() for c in k):
                raise SettingsError("API keys must not hold spaces or control characters")
        return tuple(keys)

    def timeout_for(self, asked: float | None) -> float:
        """A request's timeout: what it asked for, capped at ``request_timeout``."""
        return self.request_timeout if asked is None else min(asked, self.request_timeout)

    def limits(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name, f in type(self).model_fields.items()
            if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("limit")
        }


def env_var(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _explain(error: ValidationError, given: set[str]) -> str:
    """One line per bad setting, naming where it came from and the value it had."""
    lines = []
    for e in error.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        where = f"{field} ({flag(field)})" if field in given else env_var(field)
        msg = e["msg"].removeprefix("Value error, ")
        shown = "(hidden)" if field == "api_keys" else repr(e.get("input"))
        lines.append(f"{where}: {msg}, got {shown}")
    return "; ".join(lines)
