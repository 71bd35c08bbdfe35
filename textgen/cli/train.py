"""`textgen train`: flags and TOML into configs, the defaults rule, fine-tuning, the run."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from textgen.cli.command import add_command
from textgen.fields import flags
from textgen.model.config import ModelConfig
from textgen.train.config import TrainConfig

# Flags come from the configs' fields (textgen.fields): one place for names, types and help.
MODEL_FLAGS = list(flags(ModelConfig))
TRAIN_FLAGS = list(flags(TrainConfig))


DESCRIPTION = (
    "Train a character language model with stateful truncated BPTT and gradient "
    "clipping. Writes last.pt, best.pt, metrics.jsonl (loss, grad_norm, clipped, "
    "val_bpc), config.json and curves.png into --out. Settings come from --config "
    "(TOML with [model] and [train] tables) and flags; flags win. Whatever neither "
    "sets is chosen by one measured rule (textgen/train/defaults.py) from the corpus size, "
    "its vocabulary and the time budget: it prints what it chose and why, and "
    "config.json records it. With no progress bar (--no-progress, or output to a "
    "file) a log line comes every 30 s, and each evaluation logs a short sample."
)
EPILOG = (
    "examples:\n"
    "  textgen train --data data/prepared/pd1998 --out runs/lstm --max-minutes 10\n"
    "  textgen train --data data/prepared/pd1998 --out runs/lstm --resume\n"
    "  textgen train --data data/prepared/mine --out runs/mine --init-from default\n"
    "  torchrun --nproc_per_node=2 -m textgen train --data ... --out runs/ddp\n"
)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", "train an LSTM/GRU/RNN language model", DESCRIPTION, EPILOG)
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
    for flag, name, typ, help_text in MODEL_FLAGS + TRAIN_FLAGS:
        p.add_argument(flag, dest=name, type=typ, help=help_text)
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
    for table, options in ((model, MODEL_FLAGS), (train, TRAIN_FLAGS)):
        for _, name, _, _ in options:
            value = getattr(args, name)
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
    (textgen.train.defaults) fills in whatever no flag or TOML value set.
    """
    from pathlib import Path

    from textgen.data.dataset import PreparedCorpus
    from textgen.data.tokenizer import Vocab
    from textgen.model import checkpoint
    from textgen.model.config import ModelConfig
    from textgen.train import defaults

    model_d, train_d = _settings(args)
    corpus = PreparedCorpus.open(args.data)
    last = Path(args.out) / "last.pt"
    if args.resume and last.is_file():
        prior = checkpoint.load(last)
        train = {**prior["train_config"], **train_d}
        prior_vocab = Vocab.from_dict(prior["tokenizer"]["vocab"])
        model_cfg = ModelConfig.from_dict(prior["model_config"])
        return model_cfg, train, prior_vocab, None, {"resumed_from": str(last)}
    if not (train_d.get("max_minutes") or train_d.get("max_steps")):
        train_d["max_minutes"] = defaults.DEFAULT_MINUTES
    vocab: Vocab | None = None
    init = None
    if args.init_from:
        from textgen.train.finetune import plan

        model_cfg, vocab, init = plan(args.init_from, corpus, model_d)
        choice = defaults.choose_finetune()
        overridden = defaults.apply(choice, {}, train_d)
    else:
        minutes = defaults.budget_minutes(train_d)
        choice = defaults.choose(
            corpus.split_chars("train"), len(corpus.vocab), minutes, corpus.split_chars("val")
        )
        overridden = defaults.apply(choice, model_d, train_d)
        model_cfg = ModelConfig.from_dict({"vocab_size": len(corpus.vocab), **model_d})
    notes = {"defaults": {**choice.to_dict(), "overridden_by_user": overridden}}
    return model_cfg, train_d, vocab, init, notes


def _print_plan(notes: dict) -> None:
    chosen = notes.get("defaults")
    if not chosen:
        print(f"resuming {notes['resumed_from']}: model and vocabulary from the checkpoint")
        return
    print("defaults (textgen/train/defaults.py; any flag or --config value wins):")
    for reason in chosen["reasons"]:
        print(f"  - {reason}")
    if chosen["overridden_by_user"]:
        print(f"  your settings replaced: {', '.join(chosen['overridden_by_user'])}")


def cmd_train(args: argparse.Namespace) -> int:
    from textgen.model.config import ModelConfig
    from textgen.train.config import TrainConfig
    from textgen.train.runtime import shutdown_distributed
    from textgen.train.trainer import Trainer

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
