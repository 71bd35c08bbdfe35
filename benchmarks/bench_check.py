"""Guard against a training-speed regression: this tree against a given commit, in one run.

`make bench-check AGAINST=<commit>` (not in CI: a shared 2-core machine is too noisy for a
gate there). The commit is checked out into a temporary git worktree; then
``benchmarks/train_throughput.py --budget-minutes 0`` runs in a fresh process for each tree in
turn, A B A B (``--pairs`` times), so the machine's drift over minutes hits both trees alike.
Both runs use this tree's benchmark script (one instrument) with each tree's package on
PYTHONPATH. Each run times the reference loop, our LSTM and our GRU back to back, and each
cell is judged by its ratio to the reference *of the same run*, which cancels most drift.

A cell fails when this tree's median ratio falls below the other tree's by more than the
spread (max - min) of either tree's own runs: a drop beyond the noise the run itself shows.
Exit status 1 on a failure; one JSON line at the end holds every figure.

    python benchmarks/bench_check.py --against 1eb8a3f [--pairs 2] [--steps 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("lstm", "gru")


def throughput(tree: Path, args: argparse.Namespace) -> dict:
    """One run of this tree's throughput benchmark (the same instrument for both) on the
    ``tree``'s package, in processes of its own."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py")]
    cmd += ["--data", str(Path(args.data).resolve()), "--budget-minutes", "0"]
    cmd += ["--steps", str(args.steps), "--rounds", str(args.rounds)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(tree), "TEXTGEN_BENCH_NO_RECORD": "1"}
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench-check: {tree} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def judge(ours: list[dict], theirs: list[dict]) -> dict[str, dict]:
    """Per cell: the medians of the ratios to the reference, the spreads, and the verdict."""
    verdicts = {}
    for cell in CELLS:
        a = [r[f"{cell}_chars_per_s"] / r["reference_chars_per_s"] for r in ours]
        b = [r[f"{cell}_chars_per_s"] / r["reference_chars_per_s"] for r in theirs]
        spread = max(max(a) - min(a), max(b) - min(b))
        drop = statistics.median(b) - statistics.median(a)
        verdicts[cell] = {
            "ours": round(statistics.median(a), 3),
            "theirs": round(statistics.median(b), 3),
            "spread": round(spread, 3),
            "change": round(-drop / statistics.median(b), 4),
            "ok": drop <= spread,
        }
    return verdicts


def worktree(commit: str, where: str) -> Path:
    path = Path(where) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(path), commit],
        check=True,
        capture_output=True,
    )
    return path


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--against", required=True, help="the commit to compare this tree with")
    ap.add_argument("--pairs", type=int, default=2, help="A B pairs of runs (default 2)")
    ap.add_argument("--steps", type=int, default=15, help="timed steps per model and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per run")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--data", default="data/prepared/pd1998", help="prepared corpus")
    args = ap.parse_args()
    if args.pairs < 2:
        ap.error(f"--pairs must be >= 2 (a spread needs two runs per tree), got {args.pairs}")
    with tempfile.TemporaryDirectory(prefix="textgen-bench-check-") as tmp:
        other = worktree(args.against, tmp)
        try:
            runs: dict[str, list[dict]] = {"ours": [], "theirs": []}
            for i in range(args.pairs):
                for name, tree in (("ours", ROOT), ("theirs", other)):
                    runs[name].append(throughput(tree, args))
                    r = runs[name][-1]
                    print(
                        f"pair {i + 1} {name:<6} reference {r['reference_chars_per_s']:>6,} "
                        f"LSTM {r['lstm_chars_per_s']:>7,} GRU {r['gru_chars_per_s']:>7,} chars/s",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                check=False,
                capture_output=True,
            )
    verdicts = judge(runs["ours"], runs["theirs"])
    print(f"\n{'cell':<6} {'this tree':>10} {args.against[:10]:>10} {'spread':>8}  (x reference)")
    for cell, v in verdicts.items():
        flag = "ok" if v["ok"] else "SLOWER beyond the spread"
        print(f"{cell:<6} {v['ours']:>10.3f} {v['theirs']:>10.3f} {v['spread']:>8.3f}  {flag}")
    print(json.dumps({"against": args.against, "cells": verdicts, "runs": runs}))
    return 0 if all(v["ok"] for v in verdicts.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
