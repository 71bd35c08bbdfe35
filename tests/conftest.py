"""Shared fixtures: small real slices of the default corpus, written to temporary files."""

from __future__ import annotations

from pathlib import Path

import pytest

from textgen.corpus import default_corpus_path


def corpus_lines(n: int, start: int = 0) -> list[str]:
    """The first n lines (after `start`) of the real PFR-tagged People's Daily file."""
    out = []
    with open(default_corpus_path(), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= start + n:
                break
            if i >= start:
                out.append(line)
    return out


@pytest.fixture(scope="session")
def pfr_slice(tmp_path_factory) -> Path:
    """400 real PFR lines (~40k characters) as a file."""
    path = tmp_path_factory.mktemp("corpus") / "slice.txt"
    path.write_text("".join(corpus_lines(400)), encoding="utf-8")
    return path
