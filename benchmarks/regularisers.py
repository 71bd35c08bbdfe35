"""The #16 levers at equal time: the bundled model's recipe with every lever off, then each lever, then all.

Every variant is `textgen train --config checkpoints/default/train.toml --max-minutes BUDGET`
with the levers the bundled recipe has on turned off (LEVERS_OFF: the 70-minute recipe the
levers were measured against), plus its flags (a separate process each, one after the other, alone on the machine: two
trainings side by side halve each other's steps). The rate decays over the budget in every
variant, so each is a complete short run of the same recipe. The interpolated Kneser-Ney
7-gram (`textgen baseline`) on the same split is printed beside them.

    python benchmarks/regularisers.py [--data data/prepared/pd1998] [--minutes 15]
        [--variants base,ema,awd,embed,all] [--out runs/regularisers]

Levers (AWD-LSTM, Merity et al. 2017, and Polyak averaging):
  ema    --ema D: evaluate and export an exponential moving average of the weights
  awd    --dropout-mask locked --weight-drop P: one dropout mask per sequence, and
         DropConnect on the recurrent weights W_hh
  embed  --embed-dropout P: drop whole characters' embedding rows
  decay  --weight-decay W: AdamW's decoupled weight decay, 0.1 instead of 0.01
  tied   --tie-weights: the output layer shares the embedding matrix; that needs a full
         softmax and embedding width = hidden size (768), so it is not in "all"
"""

from __future__ import annotations

import argparse
import json
import sys

from train_quality import run_json  # a sibling script: python benchmarks/regularisers.py

RECIPE = "checkpoints/default/train.toml"
# The recipe's levers turned off; a variant's flags come after these, so they win.
LEVERS_OFF = [
    "--dropout-mask",
    "element",
    "--weight-drop",
    "0",
    "--embed-dropout",
    "0",
    "--ema",
    "0",
    "--weight-decay",
    "0.01",
]
VARIANTS = {
    "base": [],
    "ema": ["--ema", "0.998"],
    "awd": ["--dropout-mask", "locked", "--weight-drop", "0.2"],
    "embed": ["--embed-dropout", "0.1"],
    "decay": ["--weight-decay", "0.1"],
}
VARIANTS["all"] = VARIANTS["ema"] + VARIANTS["awd"] + VARIANTS["embed"]  # as first measured
VARIANTS["tied"] = ["--tie-weights", "--softmax", "full", "--embed-dim", "768"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="data/prepared/pd1998")
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per variant")
    ap.add_argument(
        "--variants",
        default=",".join(n for n in VARIANTS if n != "tied"),
        help="comma-separated, in order",
    )
    ap.add_argument("--out", default="runs/regularisers", help="where the run folders go")
    args = ap.parse_args()
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    textgen = [sys.executable, "-m", "textgen"]
    kn, _ = run_json([*textgen, "baseline", "--data", args.data, "--json"])
    rows = {}
    for name in names:
        cmd = [
            *textgen, "train", "--config", RECIPE, "--data", args.data,
            "--out", f"{args.out}/{name}", *LEVERS_OFF, *VARIANTS[name],
            "--max-minutes", str(args.minutes), "--no-progress", "--json",
        ]  # fmt: skip
        result, secs = run_json(cmd)
        rows[name] = {
            "flags": " ".join(VARIANTS[name]) or "(the recipe as it is)",
            "val_bpc": result["val_bpc"],
            "best_val_bpc": result["best_val_bpc"],
            "steps": result["step"],
            "seconds": round(secs, 1),
        }
        print(f"{name}: {json.dumps(rows[name])}", flush=True)
    print(
        f"\nvalidation bits/char after {args.minutes:g} minutes each ({RECIPE}, levers off, alone)"
    )
    print(f"{'variant':<8} {'val BPC':>8} {'best':>8} {'steps':>7}  flags")
    print(f"{'7-gram':<8} {kn['val_bpc']:>8.4f}")
    for name, r in rows.items():
        print(
            f"{name:<8} {r['val_bpc']:>8.4f} {r['best_val_bpc']:>8.4f} {r['steps']:>7}  {r['flags']}"
        )
    base = rows.get("base")
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "kn7_val_bpc": round(kn["val_bpc"], 4),
                **{f"{n}_val_bpc": round(r["best_val_bpc"], 4) for n, r in rows.items()},
                **{f"{n}_steps": r["steps"] for n, r in rows.items()},
                **(
                    {
                        f"{n}_minus_base": round(r["best_val_bpc"] - base["best_val_bpc"], 4)
                        for n, r in rows.items()
                        if n != "base"
                    }
                    if base
                    else {}
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
