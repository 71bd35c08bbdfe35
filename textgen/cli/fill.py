"""`textgen fill`: the likeliest characters for the blanks of a text, from both sides."""

from __future__ import annotations

import argparse
import json

from textgen.cli.command import add_command

EPILOG = """\
examples:
  textgen fill --text 中华人民共和＿，成立于＿＿＿＿年     # ＿ or _ marks a one-character blank
  textgen fill --text ＿京是中国的首都 --top 3 --json
  textgen fill --text ＿京是中国的首都 --left-only          # the left context alone, to compare
"""


def add_fill(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "fill",
        "fill the blanks of a text with both sides' context",
        "The left-to-right model proposes characters for each blank (＿ or _, one character "
        "each) and every candidate is rescored by the likelihood of the text after it, so "
        "the right context counts too: P(c | left, right) ~ P(c | left) P(right | left, c). "
        "Blanks are filled left to right. With no --checkpoint: $TEXTGEN_CHECKPOINT, else the "
        "bundled model.",
        EPILOG,
    )
    p.add_argument("--text", required=True, help="the text, with ＿ or _ for each blank char")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file or run folder")
    p.add_argument("--top", type=int, default=5, help="candidates shown per blank (default 5)")
    p.add_argument(
        "--candidates",
        type=int,
        default=64,
        help="the left model's likeliest characters rescored per blank (default 64)",
    )
    p.add_argument("--left-only", action="store_true", help="score with the left context only")
    p.add_argument("--json", action="store_true", help="print one line of JSON")
    p.set_defaults(func=cmd_fill)


def cmd_fill(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from textgen.inference.fill import fill
    from textgen.inference.generator import TextGenerator

    for name in ("top", "candidates"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    gen = TextGenerator.from_checkpoint(args.checkpoint, precision="fp32")
    r = fill(
        gen.model, gen.vocab, gen.normalize, args.text, args.top, args.candidates, args.left_only
    )
    print(r.text)
    for i, blank in enumerate(r.blanks, 1):
        shown = "  ".join(f"{c.char} {c.prob:.3f}" for c in blank.candidates)
        print(f"blank {i} (char {blank.position}): {shown}")
    if args.json:
        print(json.dumps(asdict(r), ensure_ascii=False))
    return 0
