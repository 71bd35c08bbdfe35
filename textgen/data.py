"""Prepared corpora on disk: metadata, vocabulary and memory-mapped token streams."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textgen.tokenizer import Vocab

SPLITS = ("train", "val", "test")


@dataclass
class PreparedCorpus:
    """A folder written by `textgen prepare`; splits are read lazily through np.memmap."""

    path: Path
    meta: dict
    vocab: Vocab

    @classmethod
    def open(cls, path: str | Path) -> PreparedCorpus:
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{path} is not a prepared corpus (no meta.json); run `textgen prepare`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        vocab = Vocab.from_dict(json.loads((path / "vocab.json").read_text(encoding="utf-8")))
        if len(vocab) != meta["vocab_size"]:
            raise ValueError(
                f"{path}: vocab.json has {len(vocab)} tokens, meta.json says {meta['vocab_size']}"
            )
        return cls(path, meta, vocab)

    def split(self, name: str) -> np.ndarray:
        """The token ids of one split as a read-only memmap (nothing is loaded up front)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        expected = self.meta["splits"][name]["tokens"]
        data = np.memmap(self.path / f"{name}.bin", dtype=dtype, mode="r")
        if len(data) != expected:
            raise ValueError(
                f"{self.path}/{name}.bin holds {len(data)} tokens, meta.json says {expected}"
            )
        return data
