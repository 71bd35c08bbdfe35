"""textgen.inference.batchfile: a file of prompts through one batching engine, JSON lines out,
checked up front, refused prompts as error rows, resumable after a kill."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from textgen.inference.batchfile import read_prompts, run_prompts
from textgen.inference.sampling import GenerationConfig
from textgen.server.responses import GenerateResponse

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = GenerationConfig(max_new_tokens=6, seed=7)
MIXED = [
    "中国",
    "",  # blank lines are skipped but still counted: rows name the real line numbers
    json.dumps({"prompt": "人民", "seed": 3}, ensure_ascii=False),
    "经济发展",
    json.dumps({"prompt": "北京", "seed": 11, "max_new_tokens": 4, "stop": ["。"]}),
    "   ",
    json.dumps({"prompt": "中国人民", "seed": 5, "temperature": 0.5, "n": 2}),
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(out: Path) -> list[dict]:
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _expected(gen, line: str):
    """What gen.generate gives for one input line on its own."""
    if not line.startswith("{"):
        return line, gen.generate(line, BASE)
    fields = json.loads(line)
    prompt = fields.pop("prompt")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    return prompt, gen.generate(prompt, dataclasses.replace(BASE, **fields))


def _recording_batches(gen, monkeypatch) -> list[int]:
    """The decode batch size of every step of the engines ``gen`` makes from now on."""
    batches: list[int] = []
    make = gen.engine

    def engine(max_batch=64, max_queue=256, on_step=None):
        return make(max_batch, max_queue, lambda b, t: batches.append(b))

    monkeypatch.setattr(gen, "engine", engine)
    return batches


def test_mixed_file_gives_the_texts_generate_gives_one_row_per_prompt(gen, tmp_path, monkeypatch):
    src, out = _write(tmp_path / "prompts.txt", MIXED), tmp_path / "out" / "rows.jsonl"
    batches = _recording_batches(gen, monkeypatch)
    counts = run_prompts(gen, src, out, BASE, max_batch=3, progress=False)
    assert counts == {"done": 5, "skipped": 0, "errors": 0}
    assert 1 < max(batches) <= 3  # batched, and never past max_batch rows
    rows = {r["line"]: r for r in _rows(out)}
    assert sorted(rows) == [1, 3, 4, 5, 7]
    shape = {"line", *GenerateResponse.model_fields}
    for number, row in rows.items():
        assert set(row) == shape and row["model"] == gen.model_id
        prompt, alone = _expected(gen, MIXED[number - 1])
        assert row["prompt"] == prompt  # as given, not normalised
        assert [c["text"] for c in row["choices"]] == [s.text for s in alone.samples]
        assert row["text"] == alone.text
    assert len(rows[5]["text"]) <= 4 and len(rows[7]["choices"]) == 2


def test_a_rerun_after_a_kill_generates_only_what_is_missing(gen, tmp_path, capsys):
    src, out = _write(tmp_path / "prompts.txt", MIXED), tmp_path / "rows.jsonl"
    run_prompts(gen, src, out, BASE, max_batch=2, progress=False)
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    lost = json.loads(lines[-1])
    # as a kill -9 leaves it: the last row never written, the one after it half written
    out.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")

    counts = run_prompts(gen, src, out, BASE, max_batch=2, progress=False)
    assert counts == {"done": 1, "skipped": 4, "errors": 0}
    rows = _rows(out)  # every line whole JSON again
    assert sorted(r["line"] for r in rows) == [1, 3, 4, 5, 7]
    again = next(r for r in rows if r["line"] == lost["line"])
    assert again["choices"] == lost["choices"]  # seeded: the same text as before the kill

    before = out.read_bytes()
    assert run_prompts(gen, src, out, BASE) == {"done": 0, "skipped": 5, "errors": 0}
    assert out.read_bytes() == before
    assert "5/5" in capsys.readouterr().err  # the bar starts at what was already done


def test_bad_lines_fail_before_anything_is_generated_naming_each_line(gen, tmp_path):
    src = _write(
        tmp_path / "prompts.txt",
        [
            "中国",
            '{"prompt": "人民", "seed": 1',  # unclosed
            "",
            '{"prompt": "经济", "temprature": 0.5}',
            '{"seed": 2}',
            '{"prompt": "  "}',
        ],
    )
    out = tmp_path / "rows.jsonl"
    with pytest.raises(ValueError) as info:
        run_prompts(gen, src, out, BASE, progress=False)
    message = str(info.value)
    assert message.startswith(f"{src}:2: invalid JSON")
    assert f"{src}:4: unknown key 'temprature' (did you mean 'temperature'?)" in message
    assert f"{src}:5: " in message and f"{src}:6: " in message and f"{src}:1:" not in message
    assert not out.exists()


def test_read_prompts_keeps_line_numbers_and_fields(tmp_path):
    src = tmp_path / "prompts.txt"
    src.write_bytes(
        "\ufeff中国\r\n\r\n".encode() + b'  {"prompt": "\\u4eba", "form": "4x5", "seed": 1}\n'
    )
    first, second = read_prompts(src)
    assert (first.line, first.prompt, dict(first.overrides)) == (1, "中国", {})
    assert (second.line, second.prompt) == (3, "人")
    assert second.config(BASE) == dataclasses.replace(BASE, form="4x5", seed=1)


def test_refused_prompts_get_error_rows_and_the_others_still_run(gen, tmp_path):
    lines = [
        "中国",
        "\u200b\u200b",  # nothing left after normalisation: PromptError
        json.dumps({"prompt": "人民", "logit_bias": {"\U0001d518": 5}}),  # FieldError
        json.dumps({"prompt": "人民", "temperature": 5}),  # out of bounds: ValueError
        json.dumps({"prompt": "人民", "regex": 5}),  # a number where a string belongs
        json.dumps({"prompt": "人民", "form": 7, "acrostic": None}),
        "经济",
    ]
    src, out = _write(tmp_path / "prompts.txt", lines), tmp_path / "rows.jsonl"
    counts = run_prompts(gen, src, out, BASE, max_batch=2, progress=False)
    assert counts == {"done": 2, "skipped": 0, "errors": 5}
    rows = {r["line"]: r for r in _rows(out)}
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7]
    assert rows[1]["text"] == gen.generate("中国", BASE).text
    assert rows[7]["text"] == gen.generate("经济", BASE).text
    assert "empty after normalisation" in rows[2]["error"] and rows[2]["prompt"] == lines[1]
    assert rows[3]["error"].startswith("logit_bias:")
    assert rows[4]["error"].startswith("temperature must be a number")
    assert rows[5]["error"] == "regex must be a string, got 5"
    assert rows[6]["error"] == "form must be a string, got 7"
    assert all(set(rows[n]) == {"line", "prompt", "error"} for n in range(2, 7))
    # error rows count as done: a rerun does not retry them
    assert run_prompts(gen, src, out, BASE, progress=False)["skipped"] == 7


def test_an_output_file_of_other_prompts_is_refused_and_left_alone(gen, tmp_path):
    src = _write(tmp_path / "prompts.txt", ["中国", "人民"])
    out = tmp_path / "rows.jsonl"
    out.write_text('{"line": 2, "prompt": "经济", "text": "x"}\n{"line": 1, "pr', encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(ValueError, match=re.escape(f"{out}:1: its row for line 2 does not match")):
        run_prompts(gen, src, out, BASE, progress=False)
    assert out.read_bytes() == before  # not even the torn tail is cut


@pytest.mark.slow
def test_kill_9_mid_file_loses_no_row_and_a_rerun_finishes_it(ckpt, tmp_path, textgen_cli):
    """A real SIGKILL of `textgen generate --prompts` once rows are on disk: every row
    written is whole JSON, and the rerun adds exactly the missing prompts, once each."""
    import os
    import signal
    import subprocess
    import sys
    import time

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f'{{"prompt": "中国", "seed": {i}}}\n' for i in range(400)), "utf-8")
    out = tmp_path / "out.jsonl"
    args = ["generate", "--checkpoint", str(ckpt), "--prompts", str(prompts)]
    args += ["--output", str(out), "--max-new-tokens", "200", "--max-batch", "4"]
    proc = subprocess.Popen([sys.executable, "-m", "textgen", *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 2000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    raw = out.read_bytes()
    whole = raw[: raw.rfind(b"\n") + 1].decode("utf-8").splitlines()
    first = [json.loads(line)["line"] for line in whole]  # every complete row parses
    assert 0 < len(first) < 400 and len(set(first)) == len(first)
    done = textgen_cli(*args, "--max-new-tokens", "5")  # the rest, shorter: the test stays fast
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert sorted(r["line"] for r in rows) == list(range(1, 401))
    assert [r["line"] for r in rows[: len(first)]] == first  # kept as written
