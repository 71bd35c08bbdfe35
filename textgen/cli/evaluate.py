"""`textgen eval`, `textgen baseline` and `textgen export`."""

from __future__ import annotations

import argparse
import json

from textgen.cli.command import add_command


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "eval",
        help="bits per character of a checkpoint on a split or a text file",
        description="Bits per character, perplexity and unknown-character rate of a checkpoint.",
        epilog="example:\n  textgen eval --checkpoint runs/lstm --data data/prepared/pd1998 --split test",
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint file or run folder"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="DIR", help="a prepared corpus")
    src.add_argument(
        "--text", metavar="FILE", help="a UTF-8 text file (normalised the checkpoint's way)"
    )
    p.add_argument("--split", choices=["train", "val", "test"], default="val")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one line of JSON")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from textgen.evaluation.evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.text, args.device)
    where = args.text or f"{args.data} [{args.split}]"
    per_token = ""
    if r["chars"] != r["tokens"]:  # word level: bits per word beside bits per character
        per_token = f" ({r['bits_per_token']:.4f} bits/token)"
    print(
        f"{where}: {r['bpc']:.4f} bits/char{per_token}, perplexity {r['perplexity']:.2f}, "
        f"unknown rate {r['unknown_rate']:.4%} over {r['tokens']:,} tokens"
    )
    if args.json:
        print(json.dumps(r))
    return 0


def add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline",
        help="interpolated Kneser-Ney n-gram baseline",
        description="Fit a character n-gram model with interpolated modified Kneser-Ney "
        "smoothing on the train split; report validation and test bits per token.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="a prepared corpus")
    p.add_argument("--order", type=int, default=7, help="n-gram order (default 7)")
    p.add_argument("--json", action="store_true", help="print one line of JSON")
    p.set_defaults(func=cmd_baseline)


def cmd_baseline(args: argparse.Namespace) -> int:
    from textgen.data.dataset import PreparedCorpus
    from textgen.evaluation.baseline import KneserNey

    corpus = PreparedCorpus.open(args.data)
    lm = KneserNey(args.order, vocab_size=len(corpus.vocab)).fit(corpus.split("train"))
    r: dict = {"order": args.order}
    for split in ("val", "test"):
        ids = corpus.split(split)
        bits = lm.bits_per_token(ids) * len(ids)  # every position is scored
        r[f"{split}_bpc"] = bits / float(corpus.token_chars(split)[ids].sum())
        r[f"{split}_bits_per_token"] = bits / len(ids)
    line = f"{args.order}-gram Kneser-Ney on {args.data}: val {r['val_bpc']:.4f}, test {r['test_bpc']:.4f} bits/char"
    if corpus.vocab.level == "word":
        line += f" ({r['val_bits_per_token']:.4f}, {r['test_bits_per_token']:.4f} bits/word)"
    print(line)
    if args.json:
        print(json.dumps(r))
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "export",
        help="write an inference-only checkpoint (no optimizer state, fp16 weights)",
        description="Copy a checkpoint without its optimizer and resume state, with weights "
        "stored in float16 (--fp32 keeps float32). Loading casts them back to float32.",
        epilog="example:\n  textgen export --checkpoint runs/lstm --out checkpoints/default/model.pt",
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint file or run folder"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the export")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from textgen.model.checkpoint import export_inference

    export_inference(args.checkpoint, args.out, half=not args.fp32)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")
    return 0
