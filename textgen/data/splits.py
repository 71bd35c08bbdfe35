"""Passes 2 and 3 of `textgen prepare` on disk: which split each document goes to, the
provisional id files, and their rewrite through the train-only vocabulary."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from textgen.data import corpus
from textgen.data.tokenizer import Vocab, make_tokenizer

SPLITS = ("train", "val", "test")
REMAP_BLOCK = 1 << 22  # ids remapped per block in pass 3


def assign_documents(
    doc_tokens: list[int], seed: int, val_fraction: float, test_fraction: float
) -> list[str] | None:
    """Which split each source file goes to, or None for contiguous blocks of one stream.

    With three or more files each file is a document and whole documents are shuffled (with
    the seed) into test, then val, until each holds its share of tokens. With fewer files
    the token stream is cut into contiguous blocks (train, then val, then test at the end).
    """
    nonempty = [i for i, n in enumerate(doc_tokens) if n > 0]
    if len(nonempty) < 3:
        return None
    order = np.random.default_rng(seed).permutation(nonempty)
    total = sum(doc_tokens)
    assignment = ["train"] * len(doc_tokens)
    k = 0
    for split, frac in (("test", test_fraction), ("val", val_fraction)):
        got = 0
        while k < len(order) - 1 and (got == 0 or got < frac * total):
            assignment[order[k]] = split
            got += doc_tokens[order[k]]
            k += 1
    if "val" not in assignment or "train" not in [assignment[i] for i in nonempty]:
        return None  # too few documents for the fractions: fall back to contiguous blocks
    return assignment


class SplitWriter:
    """Pass 2: appends ids of the provisional vocabulary (uint32) to ``<split>.all``."""

    def __init__(
        self,
        folder: Path,
        vocab: Vocab,
        total: int,
        fractions: tuple[float, float],
        assignment: list[str] | None,
    ) -> None:
        val_fraction, test_fraction = fractions
        self.tokenizer = make_tokenizer(vocab)
        self.vocab = vocab
        self.assignment = assignment
        # closed (and fsynced) in close(); the folder is deleted whole on failure
        self.files = {s: open(folder / f"{s}.all", "wb") for s in SPLITS}  # noqa: SIM115
        self.tokens = dict.fromkeys(SPLITS, 0)
        self.docs = dict.fromkeys(SPLITS, 0)
        # contiguous mode: the token positions where val and test begin (moved to a line end)
        train_share = 1 - val_fraction - test_fraction
        self.bounds = [int(total * train_share), int(total * (1 - test_fraction))]
        self.pos = 0
        self.newline = vocab.id("\n")
        self.last_doc = -1

    def _encode(self, tokens: str | list[str]) -> np.ndarray:
        if isinstance(tokens, str):
            return self.tokenizer.encode(tokens).astype(np.uint32)
        get = self.vocab.id
        return np.fromiter((get(t) for t in tokens), dtype=np.uint32, count=len(tokens))

    def write(self, doc: int, tokens: str | list[str]) -> None:
        ids = self._encode(tokens)
        if self.assignment is not None:
            self._emit(self.assignment[doc], ids, new_doc=doc != self.last_doc)
            self.last_doc = doc
            return
        while len(ids):
            split_index = sum(self.pos >= b for b in self.bounds)
            split = SPLITS[split_index]
            cut = len(ids)
            if split_index < 2 and self.pos + len(ids) > self.bounds[split_index]:
                start = self.bounds[split_index] - self.pos
                nl = np.flatnonzero(ids[start:] == self.newline)
                cut = start + int(nl[0]) + 1 if len(nl) else len(ids)
                if cut == len(ids):
                    self.bounds[split_index] = self.pos + cut  # no line end here: move the bound
            self._emit(split, ids[:cut], new_doc=self.tokens[split] == 0)
            self.pos += cut
            ids = ids[cut:]

    def _emit(self, split: str, ids: np.ndarray, new_doc: bool) -> None:
        self.files[split].write(ids.astype("<u4").tobytes())
        self.tokens[split] += len(ids)
        self.docs[split] += int(new_doc)

    def close(self) -> None:
        for f in self.files.values():
            f.flush()
            f.close()
        empty = [s for s in SPLITS if self.tokens[s] == 0]
        if empty:
            raise corpus.CorpusError(
                f"corpus too small to split: {', '.join(empty)} would be empty "
                f"({sum(self.tokens.values())} tokens in all); add text or change the fractions"
            )


def blocks(path: Path) -> Iterator[np.ndarray]:
    ids = np.memmap(path, dtype="<u4", mode="r")
    for start in range(0, len(ids), REMAP_BLOCK):
        yield np.asarray(ids[start : start + REMAP_BLOCK])


def train_counts(folder: Path, every: Vocab) -> dict[str, int]:
    """Token counts of the train split alone (pass 3 builds the vocabulary from them)."""
    n = np.zeros(len(every), dtype=np.int64)
    for ids in blocks(folder / "train.all"):
        n += np.bincount(ids, minlength=len(every))
    return {every.tokens[i]: int(n[i]) for i in np.flatnonzero(n)}


def remap(folder: Path, every: Vocab, vocab: Vocab) -> dict[str, dict[str, int]]:
    """Pass 3: rewrite ``<split>.all`` (provisional ids) as ``<split>.bin`` (``vocab``'s ids).

    Returns per split the tokens, unknown tokens, characters and characters of unknown tokens
    (so a word-level report can divide its bits by the characters of the text).
    """
    lut = np.array([vocab.id(t) for t in every.tokens], dtype=vocab.dtype)
    lengths = np.array([len(t) for t in every.tokens], dtype=np.int64)
    stats = {}
    for split in SPLITS:
        s = dict.fromkeys(("tokens", "unknown", "chars", "unknown_chars"), 0)
        with open(folder / f"{split}.bin", "wb") as f:
            for ids in blocks(folder / f"{split}.all"):
                new = lut[ids]
                f.write(new.astype(vocab.dtype.newbyteorder("<")).tobytes())
                unk = new == 0
                s["tokens"] += len(ids)
                s["unknown"] += int(np.count_nonzero(unk))
                s["chars"] += int(lengths[ids].sum())
                s["unknown_chars"] += int(lengths[ids[unk]].sum())
            f.flush()
            os.fsync(f.fileno())
        (folder / f"{split}.all").unlink()
        stats[split] = s
    return stats
