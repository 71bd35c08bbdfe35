"""Generation for a file of prompts: `textgen generate --prompts FILE --output OUT.jsonl`.

Each non-empty input line is a plain prompt, or a JSON object (the line starts with ``{``)
holding ``prompt`` and any :class:`~textgen.inference.sampling.GenerationConfig` fields, which
override the caller's base config for that prompt. The whole file is checked before anything
is generated, so a typo on the last line does not waste a long run.

Every remaining prompt goes through one :class:`~textgen.inference.engine.Engine`, up to
``max_batch`` requests in flight, new ones submitted as others finish. Each finished prompt is
written at once as one JSON line: ``line`` (its input line number), ``prompt`` (as given) and
the fields of the HTTP API's `/v1/generate` answer; a prompt the engine refuses gets an
``error`` row instead and the run goes on. Rows are flushed and fsynced one by one, so a
killed run keeps what it wrote, and a rerun with the same output file skips the lines already
there (after cutting away a row torn by the kill): it goes on where it stopped.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from textgen.durable import fsync_dir
from textgen.inference.engine import Engine
from textgen.inference.events import Done, Event, Expired, Failed
from textgen.inference.generator import TextGenerator
from textgen.inference.limits import PARAMS
from textgen.inference.sampling import GenerationConfig
from textgen.server.responses import generate_response

CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(GenerationConfig))
# JSON types of the fields without numeric bounds (those bounds already reject a wrong type,
# naming the field): a number where a string belongs would otherwise fail deep in the engine
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "stop": (str, list),
    "choice": (list,),
    "logit_bias": (dict,),
    "regex": (str,),
    "form": (str,),
    "acrostic": (str,),
    "script": (str,),
    "logprobs": (bool,),
    "echo": (bool,),
}
TYPE_NAMES = {str: "a string", list: "a list", dict: "an object", bool: "true or false"}
MAX_REPORTED = 20  # problems listed in one error; a wrong file (binary, CSV) has one per line
Row = dict[str, Any]


@dataclass(frozen=True)
class PromptLine:
    """One prompt of the file: its 1-based line number, its text and its config fields."""

    line: int
    prompt: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def config(self, base: GenerationConfig) -> GenerationConfig:
        """``base`` with this line's fields; ValueError naming the field of a bad value."""
        for key, value in self.overrides.items():
            wanted = JSON_TYPES.get(key, ())
            nullable = value is None and PARAMS[key].default is None
            if wanted and not isinstance(value, wanted) and not nullable:
                names = " or ".join(TYPE_NAMES[t] for t in wanted)
                raise ValueError(f"{key} must be {names}, got {value!r}")
        # JSON has no tuples; the config keeps its string lists as tuples
        values: dict[str, Any] = {
            k: tuple(v) if k in ("stop", "choice") and isinstance(v, list) else v
            for k, v in self.overrides.items()
        }
        return dataclasses.replace(base, **values)


# ------------------------------------------------------------------------ the prompts file


def read_prompts(path: str | Path) -> list[PromptLine]:
    """The prompts of ``path``; ValueError listing every bad line as ``FILE:LINE: problem``."""
    path = Path(path)
    prompts: list[PromptLine] = []
    problems: list[str] = []
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # editors on Windows add a BOM
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            item = _parse_line(raw, number)
        except ValueError as e:
            problems.append(f"{path}:{number}: {e}")
            continue
        if item is not None:
            prompts.append(item)
    if problems:
        more = len(problems) - MAX_REPORTED
        tail = [f"... and {more} more bad lines"] if more > 0 else []
        raise ValueError("\n".join(problems[:MAX_REPORTED] + tail))
    return prompts


def _parse_line(raw: bytes, number: int) -> PromptLine | None:
    """One input line -> its prompt, None when blank; ValueError saying what is wrong."""
    try:
        text = raw.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (bad byte at column {e.start + 1})") from None
    if not text.strip():
        return None
    if not text.lstrip().startswith("{"):
        return PromptLine(number, text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from None
    for key in obj:
        if key != "prompt" and key not in CONFIG_FIELDS:
            raise ValueError(_unknown_key(key))
    prompt = obj.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f'"prompt" must be a non-empty string, got {prompt!r}')
    return PromptLine(number, prompt, obj)


def _unknown_key(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(CONFIG_FIELDS | {"prompt"}), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; allowed: prompt and the generation fields"


# ------------------------------------------------------------------------ resuming


def read_done(out: Path, path: Path, prompts: list[PromptLine]) -> set[int]:
    """The input lines ``out`` already answers. A row torn by a kill is cut away; a row that
    does not match ``prompts`` is a ValueError (the output of another file, most likely)."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = _intact_end(data)
    by_line = {p.line: p.prompt for p in prompts}
    done: set[int] = set()
    for number, raw in enumerate(data[:end].split(b"\n"), start=1):
        if not raw.strip():
            continue
        row = _row(raw)
        if row is None:
            raise ValueError(f"{out}:{number}: not a row of a prompts run: {raw[:60]!r}")
        if row["line"] not in by_line or by_line[row["line"]] != row.get("prompt"):
            raise ValueError(
                f"{out}:{number}: its row for line {row['line']} does not match {path}; "
                "was it written for another prompts file?"
            )
        done.add(row["line"])
    if end < len(data):  # only once every row checked out: never cut a file we refuse
        with open(out, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    return done


def _intact_end(data: bytes) -> int:
    """Length of ``data`` without its torn last row: a row is written whole with its newline,
    so a kill leaves at most the last line unterminated (or, after a crash, garbled)."""
    end = data.rfind(b"\n") + 1
    start = data.rfind(b"\n", 0, max(end - 1, 0)) + 1  # of the last terminated line
    if end and _row(data[start:end]) is None:
        return start
    return end


def _row(raw: bytes) -> Row | None:
    """An output row, or None for anything else (garbled bytes, no integer ``line``)."""
    try:
        row = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None
    if not isinstance(row, dict) or type(row.get("line")) is not int:
        return None
    return row


# ------------------------------------------------------------------------ the run


def run_prompts(
    gen: TextGenerator,
    path: str | Path,
    out: str | Path,
    base: GenerationConfig,
    max_batch: int = 32,
    progress: bool = True,
) -> dict[str, int]:
    """Generate every prompt of ``path`` not yet in ``out`` (JSON lines, see the module
    docstring). Returns counts: ``done`` (generated now), ``skipped`` (already in ``out``),
    ``errors`` (refused now, written as error rows)."""
    path, out = Path(path), Path(out)
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if out.exists() and out.resolve() == path.resolve():
        raise ValueError(f"the output file is the prompts file: {out}")
    prompts = read_prompts(path)
    done = read_done(out, path, prompts)
    todo = [p for p in prompts if p.line not in done]
    counts = {"done": 0, "skipped": len(prompts) - len(todo), "errors": 0}
    bar = tqdm(
        total=len(prompts),
        initial=counts["skipped"],
        unit="prompt",
        file=sys.stderr,
        disable=not progress,
    )
    with bar, _appending(out) as f:

        def emit(row: Row) -> None:
            _write_row(f, row)
            counts["errors" if "error" in row else "done"] += 1
            bar.update(1)

        _generate(gen, todo, base, max_batch, emit)
    return counts


def _generate(
    gen: TextGenerator,
    todo: list[PromptLine],
    base: GenerationConfig,
    max_batch: int,
    emit: Callable[[Row], None],
) -> None:
    """Continuous batching: keep ``max_batch`` requests in flight, emit each row as it ends."""
    engine = gen.engine(max_batch=max_batch, max_queue=max_batch)
    pending = deque(todo)
    ended: list[tuple[PromptLine, Event]] = []
    while pending or not engine.idle:
        while pending and engine.in_flight < max_batch:
            item = pending.popleft()
            if (error := _submit(engine, item, base, ended)) is not None:
                emit(_error_row(item, error))
        engine.step()  # a no-op when every submission above was refused
        for item, event in ended:
            emit(_result_row(item, event, gen.model_id))
        ended.clear()


def _submit(
    engine: Engine, item: PromptLine, base: GenerationConfig, ended: list[tuple[PromptLine, Event]]
) -> str | None:
    """Submit one prompt, its final event to land in ``ended``; the refusal's message, if any."""

    def sink(events: list[Event]) -> None:
        ended.extend((item, e) for e in events if isinstance(e, (Done, Failed, Expired)))

    try:
        # PromptError and FieldError are ValueErrors, as are the config's own checks; a
        # TypeError would be a wrong value type that JSON_TYPES let through: still this line's
        request = engine.request(item.prompt, item.config(base), sink)
    except (ValueError, TypeError) as e:
        return str(e)
    engine.submit(request)
    return None


def _result_row(item: PromptLine, event: Event, model_id: str) -> Row:
    if isinstance(event, Failed):
        return _error_row(item, event.message)
    if isinstance(event, Expired):  # only with a queue timeout, which this run never sets
        return _error_row(item, f"expired after waiting {event.waited_s:.1f} s for a slot")
    assert isinstance(event, Done)  # the sink keeps final events only
    row = {"line": item.line, "prompt": item.prompt}
    row.update(generate_response(event.result, model_id).model_dump(mode="json"))
    # the input prompt, not the normalised one: a rerun matches rows to lines by it
    row["prompt"] = item.prompt
    return row


def _error_row(item: PromptLine, message: str) -> Row:
    return {"line": item.line, "prompt": item.prompt, "error": message}


@contextmanager
def _appending(out: Path) -> Iterator[IO[str]]:
    """``out`` opened for appending rows; a new file's directory entry is made durable too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.exists()
    with open(out, "a", encoding="utf-8") as f:
        if new and os.name == "posix":  # without it a crash may lose the file, fsynced or not
            fsync_dir(out.parent)
        yield f


def _write_row(f: IO[str], row: Row) -> None:
    """One row, whole, then on disk: a kill -9 or a crash keeps every row written before it."""
    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
