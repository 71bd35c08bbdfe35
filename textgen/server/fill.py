"""`POST /v1/fill`: the blanks of a text filled with both sides' context (textgen.inference.fill).

The work runs in a worker thread on the float32 model, beside the generation engine's thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from textgen.inference.fill import MAX_FILL_CHARS, FillError, fill
from textgen.server.guard import error
from textgen.server.requests import JsonRequest, _check_text


class FillRequest(JsonRequest):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1,
        max_length=MAX_FILL_CHARS,
        description="text with ＿ (or _) for each blank character",
    )
    top: int = Field(5, ge=1, le=20, description="candidates returned per blank")
    candidates: int = Field(
        64, ge=1, le=512, description="the left model's likeliest characters rescored per blank"
    )
    left_only: bool = Field(False, description="score with the left context alone")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _check_text("text", v)


class FillCandidate(BaseModel):
    char: str
    prob: float = Field(description="with both sides; normalised over the candidates considered")
    left_prob: float = Field(description="the left model's own probability")


class FillBlank(BaseModel):
    position: int = Field(description="character offset in text")
    candidates: list[FillCandidate]


class FillResponse(BaseModel):
    text: str = Field(description="the text as the model read it, blanks filled with the best")
    blanks: list[FillBlank]


def add_fill_route(app: FastAPI, responses: dict[int | str, dict[str, Any]]) -> None:
    @app.post(
        "/v1/fill",
        response_model=FillResponse,
        responses=responses,
        summary="Fill blanks with both sides' context",
    )
    async def fill_blanks(body: FillRequest, request: Request) -> Any:
        """Each blank's likeliest characters: the left model's candidates rescored by the
        likelihood of the text after the blank."""
        gen = request.app.state.generator
        args = (gen.model, gen.vocab, gen.normalize, body.text, body.top, body.candidates)
        try:
            result = await asyncio.to_thread(fill, *args, body.left_only)
        except FillError as e:
            return error(422, f"text: {e}", "invalid_request_error", "text")
        return FillResponse.model_validate(asdict(result))
