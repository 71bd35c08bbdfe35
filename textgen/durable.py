"""Making a file's existence survive a crash: what a written, fsynced file still needs."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: str | Path) -> None:
    """fsync ``folder`` itself, so that a file created or renamed in it stays after a crash
    (fsyncing the file alone does not record its directory entry)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
