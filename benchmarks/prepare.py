"""Benchmark `textgen prepare`: characters per second and peak RSS.

Corpora: the default People's Daily 1998 corpus, and a generated corpus of at least 200 MB
(real paragraphs of the default corpus, shuffled anew for each repetition, in one file) that
shows memory stays bounded. Each run is a separate `textgen prepare` process; its peak RSS
comes from the kernel (wait4). The reference is a plain in-memory script (read everything,
count with a Counter, encode with a dict) on the default corpus, measured in the same run.

    python benchmarks/prepare.py [--size-mb 200] [--keep]

Targets: default corpus under 30 s; peak RSS of the 200 MB corpus under 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFERENCE = r"""
import sys, collections, numpy as np
from textgen.data.corpus import default_corpus_path, pfr_to_text
from textgen.data.normalize import normalize
lines = open(default_corpus_path(), encoding="utf-8").read().splitlines()
text = normalize("\n".join(pfr_to_text(l) for l in lines) + "\n")
counts = collections.Counter(text)
index = {c: i + 1 for i, (c, _) in enumerate(sorted(counts.items(), key=lambda x: (-x[1], x[0])))}
ids = np.array([index[c] for c in text], dtype=np.uint16)
n = len(ids)
ids[: int(n * 0.9)].tofile(sys.argv[1] + "/train.bin")
print(n)
"""


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; return (seconds, peak RSS in MB, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {text[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, text  # ru_maxrss is in KiB on Linux


def make_big_corpus(path: Path, size_mb: int, seed: int = 0) -> int:
    """Write >= size_mb MB of shuffled real paragraphs; returns the number of characters."""
    from textgen.data.corpus import default_corpus_path, pfr_to_text

    with open(default_corpus_path(), encoding="utf-8") as f:
        paragraphs = [pfr_to_text(line) for line in f if line.strip()]
    rng = random.Random(seed)
    written = chars = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < size_mb * 1_000_000:
            rng.shuffle(paragraphs)
            block = "\n".join(paragraphs) + "\n"
            out.write(block)
            written += len(block.encode("utf-8"))
            chars += len(block)
    return chars


def prepare_cmd(source: Path | None, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "textgen", "prepare", "--out", str(out), "--no-progress", "--json"]
    return cmd + (["--source", str(source)] if source else [])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--size-mb", type=int, default=200, help="size of the generated corpus (default 200)"
    )
    args = ap.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="textgen-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "ref").mkdir()
        secs, rss, out = run_measured([sys.executable, "-c", REFERENCE, str(tmp / "ref")])
        results["reference_default"] = {
            "chars": int(out.split()[-1]),
            "seconds": secs,
            "peak_rss_mb": rss,
        }

        secs, rss, out = run_measured(prepare_cmd(None, tmp / "default"))
        meta = json.loads(out.strip().splitlines()[-1])
        chars = sum(s["tokens"] for s in meta["splits"].values())
        results["default"] = {"chars": chars, "seconds": secs, "peak_rss_mb": rss}

        big = tmp / "big.txt"
        t0 = time.perf_counter()
        make_big_corpus(big, args.size_mb)
        gen_s = time.perf_counter() - t0
        secs, rss, out = run_measured(prepare_cmd(big, tmp / "big"))
        meta = json.loads(out.strip().splitlines()[-1])
        chars = sum(s["tokens"] for s in meta["splits"].values())
        results["generated"] = {
            "chars": chars,
            "seconds": secs,
            "peak_rss_mb": rss,
            "bytes": big.stat().st_size,
            "generate_s": gen_s,
        }

    for r in results.values():
        r["chars_per_s"] = r["chars"] / r["seconds"]
    print(
        f"{'corpus':<20} {'MB':>8} {'chars':>12} {'seconds':>8} {'chars/s':>12} {'peak RSS MB':>12}"
    )
    for name, r in results.items():
        mb = r.get("bytes", 0) / 1e6
        print(
            f"{name:<20} {mb:>8.1f} {r['chars']:>12,} {r['seconds']:>8.1f} "
            f"{r['chars_per_s']:>12,.0f} {r['peak_rss_mb']:>12.0f}"
        )
    ratio = results["default"]["chars_per_s"] / results["reference_default"]["chars_per_s"]
    print(
        f"default corpus vs in-memory reference: {ratio:.2f}x the speed, "
        f"{results['default']['peak_rss_mb'] / results['reference_default']['peak_rss_mb']:.2f}x the RSS"
    )
    print(
        f"targets: default < 30 s: {results['default']['seconds'] < 30}; "
        f"generated peak RSS < 1024 MB: {results['generated']['peak_rss_mb'] < 1024}"
    )
    print(
        json.dumps(
            {
                "chars_per_s": {k: round(v["chars_per_s"]) for k, v in results.items()},
                "peak_rss_mb": {k: round(v["peak_rss_mb"], 1) for k, v in results.items()},
                "seconds": {k: round(v["seconds"], 2) for k, v in results.items()},
                "generated_mb": round(results["generated"]["bytes"] / 1e6, 1),
                "ratio_vs_reference": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
