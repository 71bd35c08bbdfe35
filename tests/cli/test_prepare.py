"""`textgen prepare` on the command line: its output, --json, and one clear line on errors."""

import json

import pytest

from textgen.data.dataset import PreparedCorpus


@pytest.mark.slow
def test_cli_prepare_and_errors(tmp_path, pfr_slice, textgen_cli):
    out = tmp_path / "cli"
    paths = ["--source", str(pfr_slice), "--out", str(out)]
    run = textgen_cli("prepare", *paths, "--json", "--no-progress", timeout=120)
    assert run.returncode == 0, run.stderr
    assert "train" in run.stdout and "vocabulary" in run.stdout
    meta = json.loads(run.stdout.strip().splitlines()[-1])
    assert meta["vocab_size"] == PreparedCorpus.open(out).meta["vocab_size"]
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\x00\x00")
    run = textgen_cli("prepare", "--source", str(bad), "--out", str(tmp_path / "x"), timeout=60)
    assert run.returncode == 1
    assert "bin.txt: binary data (NUL byte at byte offset 0)" in run.stderr
    assert "Traceback" not in run.stderr
