"""Training throughput (characters/s) of textgen's LSTM and GRU against a plain reference loop.

The reference trains the way the well-known PyTorch word-language-model example does:
nn.Embedding -> nn.LSTM -> nn.Linear with a full softmax in fp32, sequence-first batches,
hidden state repackaged between chunks, clip_grad_norm_ 0.25 and a manual SGD update (lr 20).
Ours: textgen's Trainer (adaptive softmax, bf16 autocast where the CPU has it, AdamW; on
CPU the GRU runs textgen.model.cpu_gru and, under bf16 autocast, the LSTM textgen.model.cpu_lstm: layers
with hand-written backwards whose time loops run in C++ where textgen.model.native built them).
Same data (the prepared default corpus), same sizes: embedding 256, hidden 512, 2 layers,
batch 32, sequence 128. Everything is measured in this run: in rounds, each timing the
reference, our LSTM and our GRU back to back, each in a process of its own (as each is run
for real: the reference with the C library's defaults, ours as `textgen train` sets itself
up); the median round's ratio is the figure.

Part 2 (skipped with --budget-minutes 0) trains the reference and the faster of our two
cells (or --cell) for the same wall-clock budget and scores both on the validation split
with the same evaluation code.

    python benchmarks/train_throughput.py [--data data/prepared/pd1998] [--steps 15] [--rounds 3]
                                          [--budget-minutes 5]

Each run appends its figures to ``benchmarks/results/train_throughput.jsonl`` with the commit
(``-dirty`` for uncommitted changes), the CPU model, the threads, torch and the precision: the
history that ``make bench-check`` and docs/benchmarks.md read (``--no-record``: do not).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from textgen.data.dataset import PreparedCorpus, StreamBatcher
from textgen.evaluation.evaluate import evaluate_ids
from textgen.hardware import gemm_seconds
from textgen.model.config import ModelConfig
from textgen.train.config import TrainConfig
from textgen.train.trainer import Trainer

EMBED, HIDDEN, LAYERS, BATCH, SEQ = 256, 512, 2, 32, 128


class ReferenceLM(nn.Module):
    """Embedding -> LSTM -> Linear, full softmax, fp32 (sequence-first like the example)."""

    def __init__(self, vocab: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, EMBED)
        self.rnn = nn.LSTM(EMBED, HIDDEN, LAYERS, dropout=dropout)
        self.decoder = nn.Linear(HIDDEN, vocab)
        for w in (self.encoder.weight, self.decoder.weight):
            nn.init.uniform_(w, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    # the interface textgen.evaluation.evaluate.evaluate_ids expects (batch-first ids)
    def forward(self, ids: torch.Tensor, state=None):
        out, state = self.rnn(self.drop(self.encoder(ids.t())), state)  # (T, B, H)
        return self.drop(out).transpose(0, 1), state  # (B, T, H)

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self.decoder(features), dim=-1)
        return nn.functional.nll_loss(logp.reshape(-1, logp.size(-1)), targets.reshape(-1))

    def init_state(self, batch: int, device=None):
        z = torch.zeros(LAYERS, batch, HIDDEN, device=device)
        return (z, z.clone())


class ReferenceLoop:
    """One training step the example's way: repackage hidden, backward, clip 0.25, SGD lr 20."""

    def __init__(self, corpus: PreparedCorpus, lr: float = 20.0, clip: float = 0.25) -> None:
        torch.manual_seed(0)
        self.model = ReferenceLM(len(corpus.vocab))
        self.batches = StreamBatcher(corpus.split("train"), BATCH, SEQ)
        self.state = self.model.init_state(BATCH)
        self.lr, self.clip = lr, clip

    def step(self) -> float:
        x, y, new_epoch = self.batches.next()
        if new_epoch:
            self.state = self.model.init_state(BATCH)
        self.state = tuple(s.detach() for s in self.state)
        self.model.zero_grad()
        features, self.state = self.model(torch.from_numpy(x), self.state)
        loss = self.model.loss(features, torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(p.grad, alpha=-self.lr)
        return float(loss.detach())


def ours(data: str, cell: str, out: str) -> Trainer:
    model_cfg = ModelConfig(
        vocab_size=len(PreparedCorpus.open(data).vocab),
        cell=cell,
        embed_dim=EMBED,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        dropout=0.1,
        softmax="adaptive",
    )
    cfg = TrainConfig(
        batch_size=BATCH,
        seq_len=SEQ,
        max_steps=100_000,
        warmup_steps=50,
        schedule="constant",
        progress=False,
        seed=0,
    )
    return Trainer(data, out, model_cfg, cfg)


def chars_per_s(step, steps: int, warmup: int = 3) -> tuple[float, float]:
    """Median characters/s over `steps` timed steps after `warmup`; also the last loss."""
    for _ in range(warmup):
        step()
    times, loss = [], float("nan")
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    return BATCH * SEQ / statistics.median(times), loss


def gemm_peak(dtype: torch.dtype, repeats: int = 5) -> float:
    """GFLOP/s of this machine's best GEMM path (oneDNN via F.linear) at the training sizes:
    (4096, 512) x (512, 2048), the best of ``repeats`` timings."""
    m, k, n = BATCH * SEQ, HIDDEN, 4 * HIDDEN
    best = min(gemm_seconds(dtype, m, k, n) / 4 for _ in range(repeats))
    return 2 * m * k * n / best / 1e9


def recurrent_flops(cell: str, embed: int) -> float:
    """GEMM FLOPs per character of the recurrent stack, forward + backward (3x forward)."""
    gates = {"lstm": 4, "gru": 3}[cell] * HIDDEN
    per_layer = [2 * (n_in + HIDDEN) * gates for n_in in (embed, *[HIDDEN] * (LAYERS - 1))]
    return 3 * sum(per_layer)


def head_flops(corpus: PreparedCorpus, adaptive: bool) -> float:
    """GEMM FLOPs per character of the softmax head, forward + backward: full, or adaptive with
    textgen's cutoffs (each tail cluster only for its share of the training characters)."""
    vocab = len(corpus.vocab)
    if not adaptive:
        return 3 * 2 * HIDDEN * vocab
    from textgen.model.charlm import CharLM

    model = CharLM(ModelConfig(vocab_size=vocab, hidden_size=HIDDEN, softmax="adaptive"))
    head = model.adaptive
    assert head is not None
    counts = np.bincount(np.asarray(corpus.split("train")), minlength=vocab)
    share = counts / counts.sum()
    flops = 2 * HIDDEN * head.head.out_features
    for i, tail in enumerate(head.tail):
        lo, hi = head.cutoffs[i], head.cutoffs[i + 1]
        proj, out = tail[0], tail[1]
        flops += (
            share[lo:hi].sum()
            * 2
            * (proj.in_features * proj.out_features + out.in_features * out.out_features)
        )
    return 3 * float(flops)


def machine_report(corpus: PreparedCorpus, rates: dict[str, float], precision: str) -> dict:
    """Each model's achieved GFLOP/s against the GEMM peaks measured now (bf16 and fp32)."""
    peaks = {"bf16": gemm_peak(torch.bfloat16), "fp32": gemm_peak(torch.float32)}
    per_char = {
        "reference": recurrent_flops("lstm", EMBED) + head_flops(corpus, adaptive=False),
        "lstm": recurrent_flops("lstm", EMBED) + head_flops(corpus, adaptive=True),
        "gru": recurrent_flops("gru", EMBED) + head_flops(corpus, adaptive=True),
    }
    ours_peak = peaks["bf16"] if precision == "bf16" else peaks["fp32"]
    print(f"\nGEMM peaks measured now: bf16 {peaks['bf16']:.0f}, fp32 {peaks['fp32']:.0f} GFLOP/s")
    out = {"peak_gflops": {k: round(v) for k, v in peaks.items()}}
    for name, flops in per_char.items():
        achieved = flops * rates[name] / 1e9
        peak = peaks["fp32"] if name == "reference" else ours_peak
        print(
            f"{name:<10} {flops / 1e6:>6.2f} MFLOP/char  {achieved:>6.0f} GFLOP/s  "
            f"{achieved / peak:>5.0%} of the {'fp32' if name == 'reference' else precision} peak"
        )
        out[f"{name}_gflops"] = round(achieved)
        out[f"{name}_of_peak"] = round(achieved / peak, 3)
    return out


def timed_child(args: argparse.Namespace, model: str) -> dict:
    """chars/s of ``model`` (reference, lstm or gru) timed in a fresh process."""
    cmd = [sys.executable, __file__, "--child", model, "--data", args.data]
    cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"timing {model} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_child(args: argparse.Namespace) -> None:
    """The --child mode: build one model, time it, print one JSON line."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="textgen-tp-") as tmp:
        if args.child == "reference":
            ref = ReferenceLoop(PreparedCorpus.open(args.data))
            rate, _ = chars_per_s(ref.step, args.steps)
            print(json.dumps({"chars_per_s": rate}))
            return
        trainer = ours(args.data, args.child, tmp)
        rate, _ = chars_per_s(lambda: trainer.train_step()["loss"], args.steps)
        print(json.dumps({"chars_per_s": rate, "precision": trainer.precision}))


def train_for(step, seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        step()
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", default="data/prepared/pd1998", help="prepared corpus (textgen prepare)"
    )
    ap.add_argument("--steps", type=int, default=15, help="timed steps per model and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of timing (median reported)")
    ap.add_argument(
        "--budget-minutes", type=float, default=5.0, help="equal-time quality run (0: skip)"
    )
    ap.add_argument(
        "--cell",
        choices=("auto", "lstm", "gru"),
        default="auto",
        help="our cell in the equal-time run (auto: the faster one in this run)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--child", choices=("reference", "lstm", "gru"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--no-record", action="store_true", help=f"do not append the result to {HISTORY}"
    )
    ap.add_argument(
        "--only-reference",
        action="store_true",
        help="only train the reference for --budget-minutes; print its val/test BPC",
    )
    args = ap.parse_args()
    if args.steps < 1 or args.rounds < 1:
        ap.error(f"--steps and --rounds must be >= 1, got {args.steps} and {args.rounds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        run_child(args)
        return
    corpus = PreparedCorpus.open(args.data)
    if args.only_reference:
        result = reference_for(corpus, args.budget_minutes * 60)
        print(f"reference after {args.budget_minutes:g} min: {result}")
        print(json.dumps({"budget_minutes": args.budget_minutes, **result}))
        return
    import tempfile

    tmp = tempfile.mkdtemp(prefix="textgen-tp-")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rounds} rounds "
        f"of {args.steps} timed steps each, each model in a process of its own"
    )
    # The machine's speed drifts over minutes: each round times all three back to back, and
    # the ratio is taken within a round; the median round is reported. A process per model:
    # the reference runs with the C library's defaults, as the example does; ours with what
    # `textgen train` sets up (its allocator setting included), and no model inherits another's
    # heap.
    rounds, precision = [], "?"
    for i in range(args.rounds):
        r = {}
        for name in ("reference", "lstm", "gru"):
            timed = timed_child(args, name)
            r[name], precision = timed["chars_per_s"], timed.get("precision", precision)
        r["ratio"] = max(r["lstm"], r["gru"]) / r["reference"]
        rounds.append(r)
        print(
            f"  round {i + 1}: reference {r['reference']:,.0f}, LSTM {r['lstm']:,.0f}, "
            f"GRU {r['gru']:,.0f} chars/s: {r['ratio']:.2f}x",
            flush=True,
        )
    rates = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"\n{'model (median of the rounds)':<28} {'chars/s':>10} {'vs reference':>13}")
    for name, label in (
        ("reference", "reference (full, fp32, SGD)"),
        ("lstm", "textgen LSTM"),
        ("gru", "textgen GRU"),
    ):
        print(f"{label:<28} {rates[name]:>10,.0f} {rates[name] / rates['reference']:>12.2f}x")
    print(f"best of ours vs the reference, median of the rounds' ratios: {rates['ratio']:.2f}x")
    result = {
        "reference_chars_per_s": round(rates["reference"]),
        "lstm_chars_per_s": round(rates["lstm"]),
        "gru_chars_per_s": round(rates["gru"]),
        "ratio": round(rates["ratio"], 3),
        "round_ratios": [round(r["ratio"], 3) for r in rounds],
        "precision": precision,
        **machine_report(corpus, rates, precision),
    }
    if args.budget_minutes > 0:
        cell = args.cell if args.cell != "auto" else max(("lstm", "gru"), key=rates.__getitem__)
        result.update(equal_time(args, corpus, tmp, cell, rates[cell]))
    if not (args.no_record or os.environ.get("TEXTGEN_BENCH_NO_RECORD")):
        record(result, args)
    print(json.dumps(result))


HISTORY = Path(__file__).resolve().parent / "results" / "train_throughput.jsonl"


def provenance() -> dict:
    """Where a figure comes from: the commit (``-dirty``: uncommitted changes), the CPU."""
    root = Path(__file__).resolve().parent.parent

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True)
        return out.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {"commit": commit, "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__}


def record(result: dict, args: argparse.Namespace) -> None:
    """Append this run to the history (one JSON object per line)."""
    row = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **provenance(),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "rounds": args.rounds,
        **result,
    }
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    with HISTORY.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(f"recorded in {HISTORY.relative_to(HISTORY.parent.parent.parent)}")


def reference_for(corpus: PreparedCorpus, seconds: float) -> dict:
    """Train the reference afresh for `seconds`; its validation and test bits/char."""
    ref = ReferenceLoop(corpus)
    steps = train_for(ref.step, seconds)
    bpc = {
        s: evaluate_ids(ref.model, np.asarray(corpus.split(s)), corpus.vocab)["bpc"]
        for s in ("val", "test")
    }
    return {
        "reference_val_bpc": round(bpc["val"], 4),
        "reference_test_bpc": round(bpc["test"], 4),
        "reference_steps": steps,
    }


def equal_time(args, corpus: PreparedCorpus, tmp: str, cell: str, rate: float) -> dict:
    """Reference vs our `cell`, each trained afresh for the same wall-clock budget, val BPC."""
    seconds = args.budget_minutes * 60
    ref = reference_for(corpus, seconds)
    ours_ = ours(args.data, cell, f"{tmp}/{cell}-quality")
    # decay over the steps the budget allows at the measured rate, as a real run would
    ours_.cfg.schedule, ours_.cfg.max_steps = (
        "cosine",
        max(1, int(seconds * rate / (BATCH * SEQ))),
    )
    our_steps = train_for(ours_.train_step, seconds)
    our_bpc = evaluate_ids(ours_.model, np.asarray(corpus.split("val")), corpus.vocab)["bpc"]
    print(f"\nequal wall-clock budget {args.budget_minutes:g} min each, validation bits/char:")
    print(f"  reference: {ref['reference_val_bpc']:.4f} after {ref['reference_steps']} steps")
    print(f"  textgen {cell.upper()}: {our_bpc:.4f} after {our_steps} steps")
    return {
        "budget_minutes": args.budget_minutes,
        **ref,
        "cell": cell,
        "our_val_bpc": round(our_bpc, 4),
        "our_steps": our_steps,
    }


if __name__ == "__main__":
    main()
