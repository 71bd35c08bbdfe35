"""The HTTP service's settings: ``TEXTGEN_*`` environment variables, then `textgen serve` flags."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Settings:
    """Server settings: ``TEXTGEN_<FIELD>`` environment variables, then `textgen serve` flags.

    ``max_queue`` bounds the requests in flight (waiting + being generated) before 429;
    ``max_batch`` bounds the sequences advanced together in one step (1 = no batching).
    """

    checkpoint: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 64
    max_queue: int = 256
    max_prompt_chars: int = 2000
    max_new_tokens: int = 1000
    max_n: int = 8
    max_body_bytes: int = 65536
    cors_origins: tuple[str, ...] = ()
    threads: int = 0
    shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue", "max_prompt_chars", "max_new_tokens", "max_n",
                     "max_body_bytes"):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: all cores but one), got {self.threads!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``TEXTGEN_*`` variables; non-None ``overrides`` (command-line flags) win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f"TEXTGEN_{f.name.upper()}"
            if env.get(var, "") != "":
                values[f.name] = _parse(var, env[var], f.default)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("cors_origins"), str):
            values["cors_origins"] = _parse("cors_origins", values["cors_origins"], ())
        return cls(**values)

    def limits(self) -> dict[str, Any]:
        keep = ("max_batch", "max_queue", "max_prompt_chars", "max_new_tokens", "max_n",
                "max_body_bytes")  # fmt: skip
        return {k: getattr(self, k) for k in keep}


def _parse(var: str, raw: str, default: Any) -> Any:
    if isinstance(default, tuple):
        return tuple(s.strip() for s in raw.split(",") if s.strip())
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(raw)
        except ValueError:
            kind = "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"{var} must be {kind}, got {raw!r}") from None
    return raw
