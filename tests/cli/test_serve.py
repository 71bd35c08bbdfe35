"""`textgen generate` on the command line: streamed text then JSON, parameter errors, --script."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from textgen.data.script import detect_text_script

pytestmark = pytest.mark.slow  # every test here runs the command line as a process


def test_cli_generate_streams_then_prints_json(gen, ckpt, generate, textgen_cli):
    sampling = ["--max-new-tokens", "25", "--temperature", "0.8", "--top-k", "40", "--seed", "1"]
    proc = textgen_cli(
        "generate", "--prompt", "中国", *sampling, "--checkpoint", str(ckpt), "--json", timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    streamed, last = proc.stdout.rstrip("\n").rsplit("\n", 1)  # the text may hold newlines
    result = json.loads(last)
    expected = generate(gen, max_new_tokens=25, temperature=0.8, top_k=40, seed=1).text
    assert result["text"] == expected and streamed == expected
    assert result["usage"]["completion_tokens"] == 25 and result["finish_reason"] == "length"


def test_cli_generate_reports_bad_parameters(ckpt, textgen_cli):
    proc = textgen_cli(
        "generate", "--prompt", "中国", "--top-p", "2", "--checkpoint", str(ckpt), timeout=120
    )
    # refused while parsing the flags (exit 2, argparse's usage error), before loading a model
    assert proc.returncode == 2 and "top_p must be a number in (0, 1], got 2.0" in proc.stderr


def test_cli_generate_script_flag(tmp_path, bundled_checkpoint, textgen_cli):
    args = [
        "--prompt",
        "中国",
        "--script",
        "traditional",
        "--max-new-tokens",
        "20",
        "--seed",
        "2",
        "--json",
    ]
    proc = textgen_cli("generate", *args, "--checkpoint", str(bundled_checkpoint), timeout=120)
    assert proc.returncode == 0, proc.stderr
    streamed, last = proc.stdout.rstrip("\n").rsplit("\n", 1)
    result = json.loads(last)
    assert result["script"] == "traditional" and streamed == result["text"]
    assert detect_text_script(result["text"]) == "traditional"
    bad = textgen_cli("generate", "--prompt", "中国", "--script", "tw", timeout=120)
    assert bad.returncode == 2 and "--script: invalid choice: 'tw'" in bad.stderr


def test_generate_prints_a_poem_of_the_form_and_runs_a_file_of_prompts(ckpt, tmp_path):
    """`textgen generate --form` without a prompt prints the poem line by line; --prompts
    writes one JSON row per prompt through the batching engine."""
    from tests.inference.test_directed import poem_problems
    from textgen.cli.main import main

    proc = subprocess.run(
        [sys.executable, "-m", "textgen", "generate", "--checkpoint", str(ckpt)]
        + ["--form", "五言绝句", "--seed", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().split("\n")
    assert len(lines) == 2 and not poem_problems("".join(lines), 4, 5)
    prompts = tmp_path / "p.txt"
    prompts.write_text(
        '中国\n{"prompt": "人民", "form": "五言绝句", "seed": 1, "max_new_tokens": 30}\n', "utf-8"
    )
    out = tmp_path / "out.jsonl"
    args = ["generate", "--checkpoint", str(ckpt), "--max-new-tokens", "5"]
    assert main([*args, "--prompts", str(prompts), "--output", str(out)]) == 0
    rows = {r["line"]: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert sorted(rows) == [1, 2] and not poem_problems(rows[2]["text"], 4, 5)
    assert main([*args, "--prompts", str(prompts)]) == 1  # no --output: a clear error
