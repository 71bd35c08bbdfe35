"""`textgen diagnose`: gradient norms through time for models, and training health for runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from textgen.cli.command import add_command

DESCRIPTION = """\
Make vanishing and exploding gradients visible.

Models (--checkpoint and/or --fresh): on random windows of the validation split, warm the
state up for --burn-in characters without gradients, then step the model one character at a
time for --k steps and measure ||d loss_T / d h_{T-k}||, the gradient of the last
character's loss with respect to each layer's hidden state k steps earlier, for k = 1..K.
Reported per layer as the arithmetic and geometric mean over the --batch windows, with a
least-squares fit of log norm against k: the decay factor per step and the half-life.
Writes gradients.json and gradients.png (log scale, one curve per model, a panel per layer).

Runs (--runs): from each run folder's metrics.jsonl, the distribution of gradient norms, the
gradient norm, clip rate and training loss over time, and whether the run stopped on
non-finite steps. Writes training_health.json and training_health.png.
"""

EPILOG = """\
examples:
  # trained checkpoints (a run folder means its best.pt), one curve each
  textgen diagnose --checkpoint runs/gradients/rnn runs/gradients/lstm_fb1 --out diag
  # untrained models: a plain RNN, LSTMs with forget-gate bias 0 and 1, a GRU
  textgen diagnose --fresh rnn,lstm,gru --forget-bias 0,1 --data data/prepared/pd1998 \\
                   --hidden-size 256 --layers 2 --softmax adaptive --out diag
  # both in one figure; fresh models take the first checkpoint's sizes
  textgen diagnose --checkpoint runs/gradients/rnn --label "RNN, 3 minutes" --fresh rnn --out diag
  # training health of runs with and without clipping
  textgen diagnose --runs runs/gradients/rnn_hot_clip runs/gradients/rnn_hot_noclip --out diag

A fresh plain RNN's curve falls as a straight line on the log scale (a constant factor per
step); an LSTM's additive cell path and a GRU's update gate make the line flatter. Only
the gradient with respect to h is measured: for an LSTM, c is held fixed at T-k.
"""


def add_diagnose(sub: argparse._SubParsersAction) -> None:
    """Register `textgen diagnose` on the CLI's subparsers."""
    p = add_command(
        sub,
        "diagnose",
        help="gradient norms through time (vanishing/exploding) and training health",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--checkpoint",
        nargs="+",
        default=[],
        metavar="PATH",
        help="checkpoint files or run folders",
    )
    g.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="TEXT",
        help="curve label for each --checkpoint, in order (default: from its "
        "config, e.g. 'LSTM fb=1.0 (trained 1200 steps)')",
    )
    g.add_argument("--fresh", metavar="CELLS", help="untrained models, e.g. rnn,lstm,gru")
    g.add_argument(
        "--forget-bias",
        default="1.0",
        metavar="LIST",
        help="forget-gate biases of the fresh LSTMs, e.g. 0,1 (default 1.0)",
    )
    for flag, help_text in (
        ("--embed-dim", "embedding size"),
        ("--hidden-size", "hidden size"),
        ("--layers", "recurrent layers"),
    ):
        g.add_argument(
            flag,
            type=int,
            help=f"fresh models' {help_text} (default: the first "
            "checkpoint's, else the ModelConfig default)",
        )
    g.add_argument("--softmax", choices=["full", "adaptive"], help="fresh models' softmax")
    g.add_argument(
        "--data",
        metavar="DIR",
        help="prepared corpus for the validation text (default: the first "
        "checkpoint's training data)",
    )
    g.add_argument("--k", type=int, default=100, help="largest lag K (default 100)")
    g.add_argument("--batch", type=int, default=32, help="validation windows (default 32)")
    g.add_argument("--burn-in", type=int, default=64, help="warm-up characters (default 64)")
    g.add_argument("--seed", type=int, default=0, help="window positions and fresh weights")
    r = p.add_argument_group("training health")
    r.add_argument("--runs", nargs="+", default=[], metavar="RUN_DIR", help="run folders")
    r.add_argument(
        "--run-label",
        action="append",
        default=[],
        metavar="TEXT",
        help="label for each --runs folder, in order (default: from config.json)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the JSON and PNG files")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", action="store_true", help="print the fitted decays as one JSON line")
    p.set_defaults(func=cmd_diagnose)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from textgen.evaluation import diagnose, health, plots

    if not (args.checkpoint or args.fresh or args.runs):
        raise ValueError("nothing to diagnose: give --checkpoint, --fresh or --runs")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    summary: dict[str, Any] = {}
    if args.checkpoint or args.fresh:
        report = _gradient_report(args)
        written = diagnose.write_json(report, out / "gradients.json")
        png = plots.plot_gradients(report, out / "gradients.png")
        print(_gradient_table(report), f"\nwritten {written} and {png}", sep="")
        summary["models"] = {m["label"]: [x["fit"] for x in m["layers"]] for m in report["models"]}
    if args.runs:
        doc = health.training_health(args.runs, args.run_label)
        written = diagnose.write_json(doc, out / "training_health.json")
        png = plots.plot_training_health(doc, out / "training_health.png")
        print(_health_table(doc), f"\nwritten {written} and {png}", sep="")
        summary["runs"] = {r["label"]: _health_summary(r) for r in doc["runs"]}
    if args.json:
        print(json.dumps(diagnose.jsonable(summary), ensure_ascii=False))
    return 0


def _gradient_report(args: argparse.Namespace) -> dict[str, Any]:
    from textgen.data.dataset import PreparedCorpus
    from textgen.evaluation import diagnose
    from textgen.model.checkpoint import load_model

    if args.label and len(args.label) != len(args.checkpoint):
        raise ValueError(
            f"--label given {len(args.label)} times for {len(args.checkpoint)} "
            "checkpoints; give one per checkpoint or none"
        )
    loaded = [load_model(path) for path in args.checkpoint]
    data = args.data or (loaded[0][2].get("data", {}).get("path") if loaded else None)
    if not data:
        raise ValueError("--data is required with --fresh and no --checkpoint")
    corpus = PreparedCorpus.open(data)
    models = []
    for i, (model, vocab, ckpt) in enumerate(loaded):
        if vocab.tokens != corpus.vocab.tokens:
            raise ValueError(
                f"{data} was prepared with another vocabulary than "
                f"{args.checkpoint[i]}; pass its --data"
            )
        label = args.label[i] if args.label else diagnose.model_label(model.config, ckpt["step"])
        models.append((model, diagnose.describe(model, label, args.checkpoint[i], ckpt["step"])))
    base = loaded[0][0].config.to_dict() if loaded else {}
    models += _fresh_models(args, len(corpus.vocab), base)
    return diagnose.gradient_report(
        models, corpus.split("val"), args.k, args.batch, args.burn_in, args.seed, str(data)
    )


def _fresh_models(args: argparse.Namespace, vocab_size: int, base: dict) -> list:
    from textgen.evaluation import diagnose
    from textgen.model.config import CELLS, ModelConfig

    if not args.fresh:
        return []
    cells = [c.strip() for c in args.fresh.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise ValueError(f"--fresh takes cells from {', '.join(CELLS)}, got {args.fresh!r}")
    try:
        biases = [float(b) for b in args.forget_bias.split(",")]
    except ValueError:
        raise ValueError(
            f"--forget-bias takes numbers like 0,1, got {args.forget_bias!r}"
        ) from None
    sizes = {k: base[k] for k in ("embed_dim", "hidden_size", "num_layers", "softmax") if k in base}
    flags = {
        "embed_dim": args.embed_dim,
        "hidden_size": args.hidden_size,
        "num_layers": args.layers,
        "softmax": args.softmax,
    }
    sizes.update({k: v for k, v in flags.items() if v is not None})
    models = []
    for cell in cells:
        for fb in biases if cell == "lstm" else [1.0]:
            config = ModelConfig(vocab_size=vocab_size, cell=cell, forget_bias=fb, **sizes)
            model = diagnose.fresh_model(config, args.seed)
            label = diagnose.model_label(config)
            models.append((model, diagnose.describe(model, label, "fresh", None)))
    return models


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _gradient_table(report: dict[str, Any]) -> str:
    k = report["lags"][-1]
    rows = [
        f"{'model':<36} {'layer':>5} {'|g| k=1':>10} {f'|g| k={k}':>10} "
        f"{'decay/step':>10} {'half-life':>9}"
    ]
    for m in report["models"]:
        for layer in m["layers"]:
            geo, fit = layer["geomean"], layer["fit"]
            rows.append(
                f"{m['label']:<36} {layer['layer']:>5} {_fmt(geo[0], '10.3g')} "
                f"{_fmt(geo[-1], '10.3g')} {_fmt(fit['decay_per_step'], '10.4f')} "
                f"{_fmt(fit['half_life_steps'], '9.1f')}"
            )
    return "\n".join(rows)


def _health_summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("steps", "skipped", "clip_rate", "stopped_non_finite", "final_val_bpc")
    return {**{k: run[k] for k in keys}, "grad_norm_median": run["grad_norm"]["median"]}


def _health_table(health: dict[str, Any]) -> str:
    rows = [
        f"{'run':<36} {'steps':>6} {'skipped':>7} {'clipped':>8} {'median |g|':>10} "
        f"{'p99 |g|':>9} {'val bpc':>8}  stopped non-finite"
    ]
    for r in health["runs"]:
        g = r["grad_norm"]
        rows.append(
            f"{r['label']:<36} {r['steps']:>6} {r['skipped']:>7} {r['clip_rate']:>8.1%} "
            f"{_fmt(g['median'], '10.3g')} {_fmt(g['p99'], '9.3g')} "
            f"{_fmt(r['final_val_bpc'], '8.3f')}  {'yes' if r['stopped_non_finite'] else 'no'}"
        )
    return "\n".join(rows)
