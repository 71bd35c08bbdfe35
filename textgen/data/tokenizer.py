"""Vocabulary and tokenizers: characters (the default) or jieba words, through one Vocab.

Ids are deterministic: ``<unk>`` is 0, then tokens by falling frequency, ties broken by the
token itself (code point order for characters), so the same corpus always gives the same ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

UNK = "<unk>"
SPECIALS = (UNK,)
LEVELS = ("char", "word")
log = logging.getLogger(__name__)


@dataclass
class Vocab:
    """Token <-> id mapping. ``tokens[i]`` is the token with id i; id 0 is ``<unk>``."""

    tokens: list[str]
    level: str = "char"
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if not self.tokens or self.tokens[0] != UNK:
            raise ValueError(f"tokens[0] must be {UNK!r}, got {self.tokens[:1]!r}")
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    @property
    def unk_id(self) -> int:
        return 0

    def id(self, token: str) -> int:
        return self._index.get(token, 0)

    @property
    def dtype(self) -> np.dtype:
        """Smallest unsigned dtype that holds every id (uint16 for any char vocabulary)."""
        return np.dtype(np.uint16) if len(self) <= 1 << 16 else np.dtype(np.uint32)

    @classmethod
    def build(
        cls,
        counts: Mapping[str, int],
        level: str = "char",
        min_freq: int = 1,
        max_vocab: int | None = None,
    ) -> Vocab:
        """Build from token counts: keep tokens seen >= min_freq times, at most max_vocab ids."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_vocab is not None and max_vocab < 2:
            raise ValueError(
                f"max_vocab must be >= 2 (room for <unk> and one token), got {max_vocab}"
            )
        kept = [(-n, t) for t, n in counts.items() if n >= min_freq and t not in SPECIALS]
        kept.sort()
        if max_vocab is not None:
            kept = kept[: max_vocab - len(SPECIALS)]
        return cls(list(SPECIALS) + [t for _, t in kept], level)

    def to_dict(self) -> dict:
        return {
            "tokens": list(self.tokens),
            "level": self.level,
            "unk": UNK,
            "specials": list(SPECIALS),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocab:
        return cls(list(d["tokens"]), d.get("level", "char"))


class CharTokenizer:
    """Characters are tokens. Encoding goes through a code-point lookup table: fast on big text."""

    level = "char"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._lut: np.ndarray | None = None

    def split(self, text: str) -> list[str]:
        return list(text)

    def _table(self) -> np.ndarray:
        if self._lut is None:
            # one id per Unicode code point (0x110000 entries); unknown code points map to 0.
            lut = np.zeros(0x110000, dtype=self.vocab.dtype)
            for i, tok in enumerate(self.vocab.tokens):
                if len(tok) == 1:
                    lut[ord(tok)] = i
            self._lut = lut
        return self._lut

    def encode(self, text: str) -> np.ndarray:
        if not text:
            return np.zeros(0, dtype=self.vocab.dtype)
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return self._table()[cps]

    def decode(self, ids: Iterable[int]) -> str:
        toks = self.vocab.tokens
        return "".join(toks[int(i)] for i in ids)


class WordTokenizer:
    """jieba words are tokens; decoding concatenates them (Chinese is written without spaces)."""

    level = "word"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        _init_jieba()

    def split(self, text: str) -> list[str]:
        return jieba_words(text)

    def encode(self, text: str) -> np.ndarray:
        get = self.vocab.id
        return np.fromiter((get(w) for w in self.split(text)), dtype=self.vocab.dtype)

    def decode(self, ids: Iterable[int]) -> str:
        toks = self.vocab.tokens
        return "".join(toks[int(i)] for i in ids)


_JIEBA_READY = False


def _init_jieba() -> None:
    global _JIEBA_READY
    if not _JIEBA_READY:
        import jieba

        jieba.setLogLevel(logging.WARNING)  # its start-up chatter goes to stderr otherwise
        jieba.initialize()
        _JIEBA_READY = True


def jieba_words(text: str) -> list[str]:
    """Segment text with jieba; each newline is a token of its own. Joining gives the text back."""
    import jieba

    _init_jieba()
    out: list[str] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line:
            out.extend(jieba.lcut(line, HMM=True))
        if i < len(lines) - 1:
            out.append("\n")
    return out


def char_lengths(vocab: Vocab, unk_chars: float = 1.0) -> np.ndarray:
    """Characters per id (float64, (V,)): each token's length, ``unk_chars`` for ``<unk>``."""
    lengths = np.array([len(t) for t in vocab.tokens], dtype=np.float64)
    lengths[vocab.unk_id] = unk_chars
    return lengths


def remap_table(src: Vocab, dst: Vocab) -> np.ndarray:
    """Lookup table from ``src`` ids to ``dst`` ids by token; tokens ``dst`` lacks -> ``<unk>``."""
    return np.array([dst.id(t) for t in src.tokens], dtype=dst.dtype)


def extend(base: Vocab, other: Vocab) -> Vocab:
    """``base`` with the tokens of ``other`` it lacks appended (in ``other``'s id order).

    Old ids keep their tokens, so a model extended to the new vocabulary still reads
    everything the base model did (fine-tuning, ``textgen train --init-from``).
    """
    if base.level != other.level:
        raise ValueError(f"cannot extend a {base.level}-level vocabulary with {other.level} tokens")
    new = [t for t in other.tokens if t not in base]
    return Vocab(base.tokens + new, base.level)


def make_tokenizer(vocab: Vocab) -> CharTokenizer | WordTokenizer:
    return CharTokenizer(vocab) if vocab.level == "char" else WordTokenizer(vocab)
