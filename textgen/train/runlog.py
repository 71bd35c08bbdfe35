"""A run's metrics.jsonl: one JSON object per step (and per evaluation), append-only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class MetricsWriter:
    """Appends one JSON object per line, flushed so a kill loses at most a torn last line."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.f = open(path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115

    def write(self, row: dict[str, Any]) -> None:
        if self.f:
            self.f.write(json.dumps(row) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f:
            self.f.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Keep rows up to `step`; drop later rows and a torn last line (from a kill)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step and not row.get("final"):
            kept.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
