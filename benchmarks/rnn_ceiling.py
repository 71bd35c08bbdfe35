"""How close the LSTM and GRU layers' training step is to what this CPU's matrix units allow.

An RNN's training step is almost all matrix products. At the throughput benchmark's shape
(embedding 256, two layers of 512, batch 32, 128 steps of BPTT) they are:

- input products, one big GEMM per layer over all 4,096 positions: forward x W_ih, and in
  backward the input gradient and the W_ih gradient (3 GEMMs of the same size per layer);
- recurrent products h W_hh, 128 in a row per layer and direction because each needs the
  previous step's result: batch 32 rows only. The W_hh gradient is one big GEMM again.

This script times each GEMM shape on its own with ``torch.mm`` (bf16 and fp32, the threads
torch uses), adds them up, and times the real thing (``nn.LSTM`` / ``nn.GRU`` forward +
backward, under bf16 autocast or in fp32) next to it. In bf16 the sum is a floor for any
kernel built from these GEMMs (the elementwise gate maths is not in it), so the gap is what
a better fused RNN kernel could win. In fp32 oneDNN's LSTM beats the sum of separate
``torch.mm`` calls, so there it is no floor. An LSTM has 4 gates, a GRU 3: three quarters
of the GEMM work.

It also times textgen.model.cpu_gru and textgen.model.cpu_lstm, which CharLM trains with on CPU
(cpu_gru's C++ loops where they build, else its Python loops, as the line says; cpu_lstm
only where the C++ loops build). Their recurrent GEMMs run on a prepacked W_hh, about a
third faster than ``torch.mm`` at batch 32, so they can come close to the sum or under it.

    python benchmarks/rnn_ceiling.py [--threads 2] [--repeats 20] [--cells lstm,gru]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

EMBED, HIDDEN, LAYERS, BATCH, SEQ = 256, 512, 2, 32, 128
GATES = {"lstm": 4, "gru": 3}


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median seconds of fn() over `repeats` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gemm_seconds(m: int, k: int, n: int, dtype: torch.dtype, repeats: int, chain: int = 1) -> float:
    """Seconds for one (m, k) @ (k, n) product; `chain` products in a row, each timed as one."""
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)

    def run() -> None:
        for _ in range(chain):
            torch.mm(a, b)

    return timed(run, repeats) / chain


def gemm_sum(cell: str, dtype: torch.dtype, repeats: int) -> tuple[float, float, dict[str, float]]:
    """(seconds, GFLOP) of every GEMM of one forward + backward of `cell`, and the parts."""
    n, gates = BATCH * SEQ, GATES[cell] * HIDDEN
    parts: dict[str, float] = {}
    flop = 0.0
    for layer in range(LAYERS):
        d_in = EMBED if layer == 0 else HIDDEN
        fwd_in = gemm_seconds(n, d_in, gates, dtype, repeats)  # x W_ih
        dx = gemm_seconds(n, gates, d_in, dtype, repeats)  # dgates W_ih^T
        dw_in = gemm_seconds(d_in, n, gates, dtype, repeats)  # x^T dgates
        dw_hh = gemm_seconds(HIDDEN, n, gates, dtype, repeats)  # h^T dgates
        step = gemm_seconds(BATCH, HIDDEN, gates, dtype, repeats, chain=SEQ)  # h W_hh
        step_back = gemm_seconds(BATCH, gates, HIDDEN, dtype, repeats, chain=SEQ)  # dgates W_hh^T
        tag = f"layer {layer + 1}"
        parts[f"{tag} input: forward, input grad, W_ih grad ({n} rows)"] = fwd_in + dx + dw_in
        parts[f"{tag} recurrent forward: {SEQ} x ({BATCH}x{HIDDEN} @ {HIDDEN}x{gates})"] = (
            SEQ * step
        )
        parts[f"{tag} recurrent backward: {SEQ} x ({BATCH}x{gates} @ {gates}x{HIDDEN})"] = (
            SEQ * step_back
        )
        parts[f"{tag} W_hh grad ({HIDDEN}x{n} @ {n}x{gates})"] = dw_hh
        flop += 2 * n * gates * (3 * d_in + 3 * HIDDEN)
    return sum(parts.values()), flop / 1e9, parts


def rnn_measured(cell: str, repeats: int, autocast: bool) -> float:
    """Median seconds of nn.LSTM / nn.GRU forward + backward at the benchmark shape."""
    torch.manual_seed(0)
    rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](EMBED, HIDDEN, LAYERS, batch_first=True)
    x = torch.randn(BATCH, SEQ, EMBED, requires_grad=True)

    def run() -> None:
        rnn.zero_grad(set_to_none=True)
        x.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, _ = rnn(x)
        out.float().sum().backward()

    return timed(run, repeats)


def textgen_measured(cell: str, repeats: int, dtype: torch.dtype) -> tuple[float, str] | None:
    """Median seconds of textgen.model.cpu_gru / cpu_lstm forward + backward and which loops ran;
    None for an LSTM without the C++ loops (CharLM then trains it through nn.LSTM)."""
    from textgen.model.cpu_gru import gru_layer
    from textgen.model.cpu_lstm import lstm_layer
    from textgen.model.native import load

    if cell == "lstm" and not load():
        return None
    torch.manual_seed(0)
    rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](EMBED, HIDDEN, LAYERS)
    x = torch.randn(SEQ, BATCH, EMBED, requires_grad=True)  # time-major, as they take it
    h0 = torch.zeros(BATCH, HIDDEN)

    def run() -> None:
        rnn.zero_grad(set_to_none=True)
        x.grad = None
        out = x
        for layer in range(LAYERS):
            weights = rnn._flat_weights[4 * layer : 4 * layer + 4]
            if cell == "gru":
                out, _ = gru_layer(out, h0, weights, dtype)
            else:
                out, _, _ = lstm_layer(out, h0, h0, weights, dtype)
        out.sum().backward()

    return timed(run, repeats), ("C++ loops" if load() else "Python loops")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--repeats", type=int, default=20, help="timed repeats per measurement")
    ap.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru")
    args = ap.parse_args()
    if args.threads < 0 or args.repeats < 1:
        ap.error(f"--threads must be >= 0 and --repeats >= 1, got {args.threads}, {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for cell in args.cells.split(","):
        if cell not in GATES:
            ap.error(f"--cells takes lstm and/or gru, got {cell!r}")
        for dtype, autocast in ((torch.bfloat16, True), (torch.float32, False)):
            bound, gflop, parts = gemm_sum(cell, dtype, args.repeats)
            real = rnn_measured(cell, args.repeats, autocast)
            name = str(dtype).removeprefix("torch.")
            print(f"\n{cell.upper()}, {name}: {gflop:.1f} GFLOP of GEMMs per forward + backward")
            for label, seconds in parts.items():
                print(f"  {label:<62} {seconds * 1e3:7.1f} ms")
            print(
                f"  {'sum of the GEMMs, each run on its own':<62} {bound * 1e3:7.1f} ms"
                f"  ({gflop / bound:.0f} GFLOP/s)"
            )
            print(
                f"  {'nn.' + cell.upper() + ' forward + backward, measured':<62} {real * 1e3:7.1f} ms"
                f"  ({gflop / real:.0f} GFLOP/s; GEMM sum / measured {bound / real:.0%})"
            )
            measured = textgen_measured(cell, args.repeats, dtype)
            if measured is not None:
                ours, loops = measured
                label = f"textgen.cpu_{cell} ({loops}) forward + backward, measured"
                print(
                    f"  {label:<62} {ours * 1e3:7.1f} ms  ({gflop / ours:.0f} GFLOP/s; "
                    f"GEMM sum / measured {bound / ours:.0%})"
                )


if __name__ == "__main__":
    main()
