"""Validation bits per character after the same wall-clock budget: LSTM, GRU, plain RNN.

Each model is trained by `textgen train` (a separate process, one after the other) with the
same settings and `--max-minutes BUDGET`, its learning rate decaying over that budget; the
interpolated Kneser-Ney 7-gram baseline (`textgen baseline`) is fitted on the same train split.
The settings are one recurrent layer of 512: in 10 minutes on 2 cores it makes ~1.5x the
steps of two layers and learns as much per step (LSTM validation 5.69 vs 5.92 BPC).

    python benchmarks/train_quality.py [--data data/prepared/pd1998] [--minutes 10] [--out runs/quality]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SETTINGS = [
    "--embed-dim",
    "256",
    "--hidden-size",
    "512",
    "--layers",
    "1",
    "--softmax",
    "adaptive",
    "--dropout",
    "0.1",
    "--batch-size",
    "32",
    "--seq-len",
    "128",
    "--lr",
    "6e-3",
    "--warmup-steps",
    "50",
    "--max-steps",
    "1000000",
    "--eval-every",
    "500",
    "--save-every",
    "500",
    "--seed",
    "1",
]


def run_json(cmd: list[str]) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def run_all(cmds: dict[str, list[str]], jobs: int) -> dict[str, tuple[dict, float]]:
    """Run the training commands, `jobs` at a time (each then gets --threads 1)."""
    from concurrent.futures import ThreadPoolExecutor

    if jobs > 1:
        cmds = {k: [*c, "--threads", "1"] for k, c in cmds.items()}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {k: pool.submit(run_json, c) for k, c in cmds.items()}
        return {k: f.result() for k, f in futures.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="data/prepared/pd1998")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    ap.add_argument("--out", default="runs/quality", help="where the run folders go")
    ap.add_argument("--cells", default="lstm,gru,rnn")
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trainings at once (more than 1: one torch thread each, side by side)",
    )
    args = ap.parse_args()
    textgen = [sys.executable, "-m", "textgen"]
    kn, kn_s = run_json([*textgen, "baseline", "--data", args.data, "--json"])
    cmds = {
        cell: [
            *textgen,
            "train",
            "--data",
            args.data,
            "--out",
            f"{args.out}/{cell}",
            "--cell",
            cell,
            *SETTINGS,
            "--max-minutes",
            str(args.minutes),
            "--no-progress",
            "--json",
        ]
        for cell in args.cells.split(",")
    }
    rows = {}
    for cell, (result, secs) in run_all(cmds, args.jobs).items():
        rows[cell] = {
            "val_bpc": result["val_bpc"],
            "best_val_bpc": result["best_val_bpc"],
            "steps": result["step"],
            "seconds": round(secs, 1),
            "clip_rate": result["health"]["clipped"] / max(1, result["health"]["steps"]),
            "run": f"{args.out}/{cell}",
        }
    threads = "one thread each, side by side" if args.jobs > 1 else "one after the other"
    print(f"validation bits/char after {args.minutes:g} minutes of training each ({threads})")
    print(f"{'model':<22} {'val BPC':>8} {'steps':>7} {'clipped':>8}")
    print(
        f"{'Kneser-Ney 7-gram':<22} {kn['val_bpc']:>8.4f} {'':>7} {'':>8}  (test {kn['test_bpc']:.4f})"
    )
    for cell, r in rows.items():
        print(
            f"{cell.upper():<22} {r['best_val_bpc']:>8.4f} {r['steps']:>7} {r['clip_rate']:>8.1%}"
        )
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "kn7_val_bpc": round(kn["val_bpc"], 4),
                "kn7_test_bpc": round(kn["test_bpc"], 4),
                **{f"{c}_val_bpc": round(r["best_val_bpc"], 4) for c, r in rows.items()},
                **{f"{c}_steps": r["steps"] for c, r in rows.items()},
                **{
                    f"{c}_beats_baseline": r["best_val_bpc"] < kn["val_bpc"]
                    for c, r in rows.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
