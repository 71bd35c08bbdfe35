"""Fixtures for the evaluation tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def strict_load():
    """``strict_load(path)``: a report's JSON, failing on NaN or Infinity (not strict JSON)."""

    def load(path: Path):
        def refuse(name):
            raise AssertionError(f"{path} holds {name}, not strict JSON")

        return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)

    return load
