"""Prepared corpora on disk: metadata, vocabulary and memory-mapped token streams."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textgen.data.tokenizer import Vocab, char_lengths

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

    def token_chars(self, split: str) -> np.ndarray:
        """Characters per token id (float64, (V,)), for bits per *character* at any level.

        ``<unk>`` stands for text the vocabulary lacks: at character level one character, at
        word level the split's average length of its unknown words (recorded by prepare).
        """
        s = self.meta["splits"][split]
        known = s.get("unknown") and "unknown_chars" in s
        return char_lengths(self.vocab, s["unknown_chars"] / s["unknown"] if known else 1.0)

    def split_chars(self, name: str) -> int:
        """Characters of a split's text (its token count where meta.json has no count)."""
        return self.meta["splits"][name].get("chars") or len(self.split(name))

    def chars_per_token(self, split: str = "train") -> float:
        """Average characters per token of a split: 1 at character level."""
        s = self.meta["splits"][split]
        return s.get("chars", s["tokens"]) / max(s["tokens"], 1)


class StreamBatcher:
    """Stateful truncated-BPTT batches: the split is cut into parallel contiguous streams.

    Stream b of rank r is ``tokens[(r * B + b) * L : (r * B + b + 1) * L]`` with
    L = len(tokens) // (B * world). Batch k holds columns ``[pos, pos + T)`` of every
    stream as inputs and ``[pos + 1, pos + T + 1)`` as targets, so the hidden state at the
    end of one batch is the right start for the next. Only the rows of a batch are read
    from the memmap. ``position()`` and ``seek()`` make the reader exactly resumable.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world: int = 1,
        lut: np.ndarray | None = None,
    ) -> None:
        """``lut`` maps the file's ids to the model's (fine-tuning on an extended vocabulary)."""
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
        self.tokens, self.lut = tokens, lut
        self.batch_size, self.seq_len = batch_size, seq_len
        self.stream_len = len(tokens) // (batch_size * world)
        if self.stream_len < seq_len + 1:
            raise ValueError(
                f"split of {len(tokens)} tokens is too short for {batch_size * world} streams "
                f"of seq_len {seq_len}; lower batch_size or seq_len"
            )
        self.starts = (rank * batch_size + np.arange(batch_size)) * self.stream_len
        self.pos = 0
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        return (self.stream_len - 1) // self.seq_len

    def next(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(inputs (B, T), targets (B, T), new_epoch); new_epoch means: reset the state."""
        new_epoch = False
        if self.pos + self.seq_len + 1 > self.stream_len:
            self.pos, self.epoch, new_epoch = 0, self.epoch + 1, True
        t = self.seq_len
        rows = np.stack([self.tokens[s + self.pos : s + self.pos + t + 1] for s in self.starts])
        self.pos += t
        rows = (self.lut[rows] if self.lut is not None else rows).astype(np.int64)
        return rows[:, :-1], rows[:, 1:], new_epoch

    def position(self) -> dict[str, int]:
        return {"pos": self.pos, "epoch": self.epoch}

    def seek(self, position: dict[str, int]) -> None:
        self.pos, self.epoch = int(position["pos"]), int(position["epoch"])
