"""The `textgen` command line: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from textgen import __version__
from textgen.cli import diagnose as cli_diagnose
from textgen.cli import evaluate as cli_evaluate
from textgen.cli import fill as cli_fill
from textgen.cli import prepare as cli_prepare
from textgen.cli import serve as cli_serve
from textgen.cli import train as cli_train

EPILOG = """\
examples:
  textgen prepare                                   # People's Daily 1998 -> data/prepared/pd1998
  textgen prepare --source my_texts/ --out data/prepared/mine
  textgen prepare --level word                      # jieba words instead of characters
"""


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    cli_prepare.add_prepare,
    cli_train.add_train,
    cli_evaluate.add_eval,
    cli_evaluate.add_baseline,
    cli_evaluate.add_export,
    cli_serve.add_generate,
    cli_fill.add_fill,
    cli_serve.add_serve,
    cli_diagnose.add_diagnose,
]


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
    except (
        ValueError,
        OSError,
        FloatingPointError,
    ) as exc:  # CorpusError is a ValueError: say what, not a traceback
        print(f"textgen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"textgen {args.command}: interrupted", file=sys.stderr)
        return 130
