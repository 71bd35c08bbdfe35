"""Fine-tuning the bundled model on new text vs training from scratch, at equal time.

On a news corpus that is not January 1998 (People's Daily articles of 2013-06-05; fetch it
with `python scripts/fetch_corpora.py news`, see the README for its license), for the same
budget: `textgen train --init-from default` against the default `textgen train` from scratch,
both scored on the corpus's validation split beside the 7-gram Kneser-Ney baseline and the
bundled model as it is (no training). Runs go one after the other; nothing else should run.

    python benchmarks/finetune.py [--minutes 5] [--out runs/finetune]

Targets (issue 13): fine-tuning beats scratch and the 7-gram. Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from defaults import TEXTGEN, run_json, train

SOURCE = "data/external/news"
DATA = "data/prepared/news"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", default="runs/finetune")
    ap.add_argument(
        "--compare-lr",
        default="6e-3",
        help="also fine-tune at this peak lr (a fresh run's), to check the fine-tuning default "
        "(5e-4); '' skips it",
    )
    args = ap.parse_args()
    if not Path(SOURCE).is_dir():
        sys.exit(f"{SOURCE} is missing: run `python scripts/fetch_corpora.py news` first")
    if not Path(DATA, "meta.json").is_file():
        run_json(
            [*TEXTGEN, "prepare", "--source", SOURCE, "--out", DATA, "--no-progress", "--json"]
        )
    meta = json.loads(Path(DATA, "meta.json").read_text(encoding="utf-8"))
    kn = run_json([*TEXTGEN, "baseline", "--data", DATA, "--json"])
    as_is = run_json([*TEXTGEN, "eval", "--checkpoint", "default", "--data", DATA, "--json"])
    scratch = train(DATA, f"{args.out}/scratch", args.minutes)
    tuned = train(DATA, f"{args.out}/finetuned", args.minutes, "--init-from default")
    other = None
    if args.compare_lr:
        flags = f"--init-from default --lr {args.compare_lr} --warmup-steps 50"
        other = train(DATA, f"{args.out}/finetuned-lr{args.compare_lr}", args.minutes, flags)
    rows = [
        ("7-gram Kneser-Ney", kn["val_bpc"], ""),
        ("bundled model, no training", as_is["bpc"], ""),
        (f"from scratch, {args.minutes:g} min", scratch["val_bpc"], f"{scratch['steps']} steps"),
        (f"fine-tuned, {args.minutes:g} min", tuned["val_bpc"], f"{tuned['steps']} steps"),
    ]
    if other:
        note = f"{other['steps']} steps, lr {args.compare_lr}, 50 warm-up steps"
        rows.append((f"fine-tuned, {args.minutes:g} min", other["val_bpc"], note))
    train_chars = meta["splits"]["train"]["chars"]
    print(f"\n{DATA}: {train_chars:,} training characters; validation bits/char")
    for name, bpc, note in rows:
        print(f"{name:<28} {bpc:>8.4f}  {note}")
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "train_chars": train_chars,
                "kn7_val_bpc": round(kn["val_bpc"], 4),
                "bundled_val_bpc": round(as_is["bpc"], 4),
                "scratch_val_bpc": round(scratch["val_bpc"], 4),
                "finetuned_val_bpc": round(tuned["val_bpc"], 4),
                "finetune_beats_scratch": tuned["val_bpc"] < scratch["val_bpc"],
                "finetune_beats_7gram": tuned["val_bpc"] < kn["val_bpc"],
                **(
                    {f"finetuned_lr{args.compare_lr}_val_bpc": round(other["val_bpc"], 4)}
                    if other
                    else {}
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
