"""`textgen prepare`: corpus files -> vocabulary + encoded train/val/test token streams.

Streaming passes keep memory bounded whatever the corpus size: pass 1 checks the sources
and counts tokens per document (which fixes the split), pass 2 encodes every token with a
provisional vocabulary of *all* tokens and writes the splits, and pass 3 builds the real
vocabulary from the **train split only** and rewrites the id files through a lookup table.
Validation and test text the training split never saw is therefore ``<unk>``, and their
unknown rates are honest. Output goes to a temporary folder beside ``out`` that replaces it
only when complete, so a failure or a kill never leaves a half-written corpus behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from textgen import __version__
from textgen.data import corpus, splits
from textgen.data.normalize import describe as describe_normalization
from textgen.data.tokenizer import LEVELS, Vocab, jieba_words

FORMAT_VERSION = 2  # 2: vocabulary from the train split; per-split chars and script
WORD_MAX_VOCAB = 30_000  # default cap at word level (see PrepareConfig.vocab_cap)
log = logging.getLogger(__name__)


@dataclass
class PrepareConfig:
    """What to prepare and how. Validation errors name the field and the value."""

    sources: list[str] = field(default_factory=list)  # empty: the default corpus
    out: str | None = None  # default: data/prepared/<name>
    level: str = "char"
    segmenter: str = "jieba"  # word level: "jieba", or "gold" for PFR-tagged sources
    encoding: str | None = None  # None: detect (UTF-8, UTF-8 with BOM, GB18030/GBK)
    format: str = "auto"  # "auto" | "text" | "pfr"
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 1234
    min_freq: int = 1
    max_vocab: int | None = None  # None: no cap for characters, WORD_MAX_VOCAB for words

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.segmenter not in ("jieba", "gold"):
            raise ValueError(f"segmenter must be 'jieba' or 'gold', got {self.segmenter!r}")
        if self.format not in corpus.FORMATS:
            raise ValueError(
                f"format must be one of {', '.join(corpus.FORMATS)}, got {self.format!r}"
            )
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 0.5:
                raise ValueError(f"{name} must be in (0, 0.5), got {value}")
        if self.min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {self.min_freq}")
        if self.max_vocab is not None and self.max_vocab < 2:
            raise ValueError(f"max_vocab must be >= 2, got {self.max_vocab}")

    def vocab_cap(self) -> int | None:
        """The cap on vocabulary ids. Words get one by default: a word vocabulary grows with
        the corpus (75k words for the 1998 corpus with jieba, most seen once or twice), and
        rare words are better left to ``<unk>`` than given an embedding row each."""
        if self.max_vocab is not None:
            return self.max_vocab
        return WORD_MAX_VOCAB if self.level == "word" else None

    def default_name(self) -> str:
        base = Path(self.sources[0]).stem if self.sources else "pd1998"
        return base if self.level == "char" else f"{base}-{self.level}"


def prepare(cfg: PrepareConfig, progress: bool = True) -> dict:
    """Prepare a corpus; returns the meta dict also written to ``<out>/meta.json``."""
    started = time.perf_counter()
    out = Path(cfg.out) if cfg.out else Path("data/prepared") / cfg.default_name()
    sources = _inspect_sources(cfg)
    total_bytes = sum(s.bytes for s in sources)

    counts, doc_tokens = _count(sources, cfg, _bar(total_bytes, "count ", progress))
    if sum(doc_tokens) == 0:
        raise corpus.CorpusError("the corpus holds no text after normalisation")
    every = Vocab.build(counts, cfg.level)  # provisional: every token of every split
    assignment = splits.assign_documents(doc_tokens, cfg.seed, cfg.val_fraction, cfg.test_fraction)

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fractions = (cfg.val_fraction, cfg.test_fraction)
        writer = splits.SplitWriter(tmp, every, sum(doc_tokens), fractions, assignment)
        bar = _bar(total_bytes, "encode", progress)
        for i, src in enumerate(sources):
            for tokens, nbytes in _token_blocks(src, cfg):
                writer.write(i, tokens)
                bar.update(nbytes)
        bar.close()
        writer.close()
        train_counts = splits.train_counts(tmp, every)
        vocab = Vocab.build(train_counts, cfg.level, cfg.min_freq, cfg.vocab_cap())
        stats = splits.remap(tmp, every, vocab)
        meta = _meta(cfg, out, sources, vocab, counts, train_counts, writer, stats, started)
        _write_json(tmp / "vocab.json", vocab.to_dict())
        _write_json(tmp / "meta.json", meta)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _inspect_sources(cfg: PrepareConfig) -> list[corpus.Source]:
    if cfg.sources:
        paths = corpus.find_files([Path(s) for s in cfg.sources])
        fmt = cfg.format
    else:
        paths, fmt = [corpus.default_corpus_path()], "pfr"
    sources = [corpus.inspect(p, cfg.encoding, fmt) for p in paths]
    if cfg.level == "word" and cfg.segmenter == "gold":
        not_pfr = [str(s.path) for s in sources if s.format != "pfr"]
        if not_pfr:
            raise ValueError(
                f"segmenter 'gold' needs PFR-tagged sources; not PFR: {', '.join(not_pfr)}"
            )
    return sources


def _bar(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False)


def _token_blocks(src: corpus.Source, cfg: PrepareConfig) -> Iterator[tuple[str | list[str], int]]:
    """Blocks of tokens: a str (each character a token) or a list of words."""
    if cfg.level == "char":
        yield from corpus.iter_blocks(src)
    elif cfg.segmenter == "gold":
        yield from corpus.iter_gold_word_blocks(src)
    else:
        for text, nbytes in corpus.iter_blocks(src):
            yield jieba_words(text), nbytes


def _count(
    sources: list[corpus.Source], cfg: PrepareConfig, bar: tqdm
) -> tuple[Counter, list[int]]:
    """Pass 1: token counts over all sources, and the number of tokens of each source."""
    char_counts = np.zeros(0x110000, dtype=np.int64)  # one counter per code point
    word_counts: Counter = Counter()
    doc_tokens = []
    for src in sources:
        n = 0
        for tokens, nbytes in _token_blocks(src, cfg):
            if isinstance(tokens, str):
                cps = np.frombuffer(tokens.encode("utf-32-le"), dtype=np.uint32)
                char_counts += np.bincount(cps, minlength=0x110000)
            else:
                word_counts.update(tokens)
            n += len(tokens)
            bar.update(nbytes)
        doc_tokens.append(n)
    bar.close()
    if cfg.level == "char":
        nz = np.flatnonzero(char_counts)
        word_counts = Counter({chr(cp): int(char_counts[cp]) for cp in nz})
    return word_counts, doc_tokens


def _meta(cfg, out, sources, vocab, counts, train_counts, writer, stats, started) -> dict:
    from textgen.data.script import detect_script

    return {
        "format_version": FORMAT_VERSION,
        "textgen_version": __version__,
        "name": out.name,
        "level": vocab.level,
        "segmenter": cfg.segmenter if vocab.level == "word" else None,
        "sources": [s.to_dict() for s in sources],
        "normalization": describe_normalization(),
        "script": detect_script(train_counts),
        "split_mode": "contiguous" if writer.assignment is None else "documents",
        "vocab_size": len(vocab),
        "vocab_from": "train",
        "dtype": vocab.dtype.name,
        "byteorder": "little",
        "distinct_tokens": len(counts),
        "train_distinct_tokens": len(train_counts),
        "splits": {
            s: {
                **stats[s],
                "documents": writer.docs[s],
                "unk_rate": stats[s]["unknown"] / max(stats[s]["tokens"], 1),
            }
            for s in splits.SPLITS
        },
        "coverage": 1 - stats["train"]["unknown"] / max(stats["train"]["tokens"], 1),
        "config": {**asdict(cfg), "max_vocab": cfg.vocab_cap()},
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def _write_json(path: Path, obj: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an older version is removed only afterwards."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
