"""Filling blanks: top-1 accuracy with both sides' context against the left context alone.

Single-character blanks cut at random places of the test split (a fixed seed), each with the
64 characters before it as left context and the 32 after it as right context; the blank's
true character must be a vocabulary character other than the paragraph mark. Both scorings
run on the same blanks in the same run (textgen.inference.fill: the left model's 64 likeliest
candidates rescored by the likelihood of the right context).

    python benchmarks/fill.py [--blanks 1000] [--seed 0] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from textgen.data.dataset import PreparedCorpus
from textgen.inference.fill import fill
from textgen.inference.generator import TextGenerator

LEFT, RIGHT = 64, 32


def sample_blanks(text: str, n: int, seed: int, ok: set[str]) -> list[tuple[str, str]]:
    """``n`` (text with one ＿, the true character), windows away from paragraph marks."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        i = rng.randrange(LEFT, len(text) - RIGHT)
        window = text[i - LEFT : i + RIGHT + 1]
        if "\n" in window or text[i] not in ok:
            continue
        out.append((text[i - LEFT : i] + "＿" + text[i + 1 : i + 1 + RIGHT], text[i]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blanks", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", help="default: the bundled model")
    ap.add_argument("--data", default="data/prepared/pd1998", help="prepared corpus (test split)")
    args = ap.parse_args()
    gen = TextGenerator.from_checkpoint(args.checkpoint, precision="fp32")
    corpus = PreparedCorpus.open(args.data)
    text = "".join(corpus.vocab.tokens[i] for i in corpus.split("test"))
    ok = {t for t in gen.vocab.tokens if len(t) == 1 and t != "\n"}
    blanks = sample_blanks(text, args.blanks, args.seed, ok)
    right = {"both": 0, "left": 0}
    t0 = time.perf_counter()
    for masked, truth in blanks:
        for name, left_only in (("both", False), ("left", True)):
            r = fill(gen.model, gen.vocab, gen.normalize, masked, top=1, left_only=left_only)
            right[name] += r.blanks[0].candidates[0].char == truth
    seconds = time.perf_counter() - t0
    acc = {k: v / len(blanks) for k, v in right.items()}
    print(
        f"{len(blanks)} blanks from the test split of {args.data} (seed {args.seed}), "
        f"left {LEFT} / right {RIGHT} chars of context, {gen.model_id}"
    )
    print(
        f"top-1 accuracy: both sides {acc['both']:.3f}, left context alone {acc['left']:.3f} "
        f"({seconds:.0f} s)"
    )
    print(
        json.dumps(
            {
                "blanks": len(blanks),
                "both_top1": round(acc["both"], 4),
                "left_top1": round(acc["left"], 4),
                "seconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
