"""Patterns for directed generation, and their compilation against a model's vocabulary.

A request may ask for a regular expression, one of a list of choices, or a poem form with
acrostic heads. All three become one regular expression (:func:`choice_regex`,
:func:`form_regex`) that outlines-core compiles into an index over the vocabulary: for each
state of the pattern's automaton, the tokens that may come next and the state each one leads
to. A character model's tokens are single characters, so a form is exact: every line has its
length, its heads and its punctuation.

A user's regex can blow up (``(a|b)*a(a|b){20}`` has a million states), so it compiles in a
worker process with a deadline (:class:`RegexWorker`): past it the worker is killed and the
request gets a :class:`FieldError`, never a stuck server. Forms and choices are linear in
their length and compile in-process. No torch here: the worker process imports only this.
"""

from __future__ import annotations

import pickle
import re
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from textgen.inference.limits import FORMS_HELP, MAX_ACROSTIC

# 五言/七言 x 绝句 (4 lines) / 律诗 (8 lines): (lines, characters per line)
FORMS: dict[str, tuple[int, int]] = {
    "五言绝句": (4, 5),
    "七言绝句": (4, 7),
    "五言律诗": (8, 5),
    "七言律诗": (8, 7),
}
FREE_FORM = re.compile(r"(\d{1,2})\s*[xX×*]\s*(\d{1,2})")
MAX_FORM_LINES, MAX_LINE_CHARS = MAX_ACROSTIC, 32
# A poem's characters: CJK unified ideographs (the basic block and extension A)
HAN = "[\u3400-\u4dbf\u4e00-\u9fff]"


class FieldError(ValueError):
    """A request field this model cannot use (a pattern, a head, a bias key); ``field`` names
    it, so the server answers 422 with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def parse_form(form: str) -> tuple[int, int]:
    """``七言绝句`` -> (4, 7); ``4x7`` -> (4, 7). FieldError for anything else."""
    key = form.strip()
    if key in FORMS:
        return FORMS[key]
    m = FREE_FORM.fullmatch(key)
    if m:
        lines, chars = int(m.group(1)), int(m.group(2))
        if 1 <= lines <= MAX_FORM_LINES and 1 <= chars <= MAX_LINE_CHARS:
            return lines, chars
        raise FieldError(
            "form",
            f"a free form must have 1 to {MAX_FORM_LINES} lines of 1 to {MAX_LINE_CHARS} "
            f"characters, got {form!r}",
        )
    raise FieldError("form", f"unknown form {form!r}: use {FORMS_HELP}")


def form_regex(form: str, heads: str = "") -> str:
    """The regex of a poem: lines of equal length, ``，`` after odd lines, ``。`` after even
    ones (and after the last), each line opening with its head character when given."""
    lines, chars = parse_form(form)
    if len(heads) > lines:
        raise FieldError(
            "acrostic", f"{len(heads)} heads for a form of {lines} lines, got {heads!r}"
        )
    parts = []
    for i in range(lines):
        head = re.escape(heads[i]) if i < len(heads) else ""
        body = f"{HAN}{{{chars - 1 if head else chars}}}"
        mark = "。" if i % 2 == 1 or i == lines - 1 else "，"
        parts.append(f"{head}{body}{mark}")
    return "".join(parts)


def choice_regex(choices: Sequence[str]) -> str:
    """One of the strings, literally. Longest first: outlines-core's automaton takes the first
    alternative that matches, so a choice that is a prefix of another would hide it."""
    if not choices:
        raise FieldError("choice", "the list of choices is empty")
    ordered = sorted(set(choices), key=lambda c: (-len(c), c))
    return "(" + "|".join(re.escape(c) for c in ordered) + ")"


def needed_chars(pattern: str) -> set[str]:
    """The characters a regex names literally (outside classes): those it may need."""
    try:
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
    except (re.error, RecursionError, OverflowError):
        return set()  # outlines-core's own parser reports the syntax error
    found: set[str] = set()

    def walk(items: Any) -> None:
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                found.add(chr(arg))
            elif name in ("SUBPATTERN",):
                walk(arg[-1])
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(arg[2])
            elif name == "BRANCH":
                for branch in arg[1]:
                    walk(branch)

    walk(parsed)
    return found


@dataclass(frozen=True)
class VocabKey:
    """What an index depends on: the tokens (id order) and the ids that may never be drawn."""

    tokens: tuple[str, ...]
    banned: tuple[int, ...]


def build_index(pattern: str, key: VocabKey) -> Any:
    """outlines-core's index of ``pattern`` over the vocabulary (its end id: len(tokens)).

    Raises FieldError("regex") for a syntax outlines-core refuses and for a pattern that no
    string of the vocabulary can match; the message names the characters it lacks.
    """
    from outlines_core import Index  # imported late: the CLI must start without it

    vocab = _vocabulary(key)
    try:
        return Index(pattern, vocab)
    except ValueError as e:
        text = str(e)
        if "incompatible" in text:
            chars = set("".join(key.tokens))
            missing = sorted(needed_chars(pattern) - chars)
            if missing:
                shown = ", ".join(repr(c) for c in missing[:10])
                raise FieldError(
                    "regex", f"needs characters the model does not have: {shown}"
                ) from None
            raise FieldError(
                "regex", f"no text of this model's vocabulary can match {pattern[:80]!r}"
            ) from None
        raise FieldError("regex", f"invalid regular expression {pattern[:80]!r}: {text}") from None


_VOCABS: dict[VocabKey, Any] = {}


def _vocabulary(key: VocabKey) -> Any:
    from outlines_core import Vocabulary

    if key not in _VOCABS:
        banned = set(key.banned)
        ids: dict[bytes, list[int]] = {}
        for i, tok in enumerate(key.tokens):
            if i not in banned and tok:
                ids.setdefault(tok.encode("utf-8"), []).append(i)
        _VOCABS.clear()  # one vocabulary per process at a time: a server holds one model
        _VOCABS[key] = Vocabulary(len(key.tokens), ids)
    return _VOCABS[key]


# ------------------------------------------------------------------ the worker process
# Frames on the worker's stdin/stdout: an 8-byte big-endian length, then a pickle.


def _send(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack(">Q", len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the regex worker closed its pipe")
    (size,) = struct.unpack(">Q", head)
    return pickle.loads(stream.read(size))  # our own child's or parent's bytes


def serve_stdio() -> None:
    """The worker's loop: (pattern, key or None) in, ("ok", pickled index) or ("error", field,
    message) out. A key of None means "the same vocabulary as last time"."""
    key: VocabKey | None = None
    while True:
        try:
            pattern, new_key = _recv(sys.stdin.buffer)
        except EOFError:
            return
        key = new_key or key
        try:
            assert key is not None
            _send(sys.stdout.buffer, ("ok", pickle.dumps(build_index(pattern, key))))
        except FieldError as e:
            _send(sys.stdout.buffer, ("error", e.field, e.message))


WORKER = "from textgen.inference.patterns import serve_stdio; serve_stdio()"


class RegexWorker:
    """Compiles regexes in a child process (a plain ``python -c``, not a fork of a threaded
    server), each within ``timeout`` seconds.

    The process starts at the first compile (or :meth:`start`) and is reused; a compile past
    its deadline kills it (the next compile starts a fresh one) and raises FieldError; so does
    an index over ``max_bytes``. Thread-safe: one compile at a time.
    """

    def __init__(self, timeout: float = 2.0, max_bytes: int = 64 << 20) -> None:
        self.timeout, self.max_bytes = timeout, max_bytes
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sent: VocabKey | None = None
        self._warm = False  # the process has answered once (its imports are done)

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            self._sent, self._warm = None, False
        return self._proc

    def compile(self, pattern: str, key: VocabKey) -> Any:
        with self._lock:
            proc = self._ensure()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                _send(proc.stdin, (pattern, None if key == self._sent else key))
                self._sent = key
                # a new process first imports outlines-core: that time is not the pattern's
                wait = self.timeout + (0.0 if self._warm else 10.0)
                ready, _, _ = select.select([proc.stdout], [], [], wait)
                if not ready:
                    self._kill()
                    raise FieldError(
                        "regex",
                        f"too complex: compiling it took over {self.timeout:g} s, got "
                        f"{pattern[:80]!r}",
                    )
                reply = _recv(proc.stdout)
            except (OSError, EOFError) as e:
                self._kill()
                raise RuntimeError(f"the regex worker failed: {e}") from None
            self._warm = True
        if reply[0] == "error":
            raise FieldError(reply[1], reply[2])
        if len(reply[1]) > self.max_bytes:
            raise FieldError(
                "regex",
                f"too large: its index takes {len(reply[1]) >> 20} MiB (at most "
                f"{self.max_bytes >> 20}), got {pattern[:80]!r}",
            )
        return pickle.loads(reply[1])  # our own child's bytes

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(5)
        self._proc, self._sent = None, None

    def close(self) -> None:
        with self._lock:
            self._kill()
