"""Benchmark `textgen serve`: latency per character and throughput, against a plain loop.

First, in this process: the test split's bits per character through the serving decode path
(``--precision``, auto by default: int8 where the CPU has an int8 engine) and through the
float32 model, and a plain PyTorch decode loop of the served model's shape (nn.Embedding ->
nn.LSTM -> nn.Linear -> softmax -> torch.multinomial, fp32, one thread) at batch 1 and 32.
Then `textgen serve` runs as a subprocess on a free 127.0.0.1 port, driven by concurrent
httpx clients: per-character streaming latency for one client, then aggregate characters per
second and request latency (p50/p99) for 1, 8, 32 and 64 clients, once with continuous
batching (the default) and once with it switched off (TEXTGEN_MAX_BATCH=1).

    python benchmarks/serve.py [--checkpoint PATH] [--clients 1,8,32,64] [--seconds 8]

Targets (issue 15): ratio_1 (one streaming client / plain loop at batch 1) >= 6, ratio_32
(32 clients batched / plain loop at batch 32) >= 3, zero errors, serving_bpc - fp32_bpc <=
0.01. The JSON last line has every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/
from devtools import local_server as local

PROMPTS = ["中国", "人民日报", "今天", "经济发展", "我们要", "新华社北京", "在改革开放中", "世界"]
REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- the server


def start_server(
    ckpt: Path, max_batch: int, log: Path, precision: str
) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "TEXTGEN_MAX_BATCH": str(max_batch),
        "TEXTGEN_MAX_QUEUE": "256",
        "TEXTGEN_PRECISION": precision,
    }
    return local.spawn(log, "--checkpoint", str(ckpt), env=env)


# ----------------------------------------------------------------------------- the clients


@dataclass
class Level:
    """What N concurrent clients achieved."""

    clients: int
    requests: int = 0
    errors: int = 0
    chars: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)  # server-side wait for a batch slot, s

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.seconds if self.seconds else 0.0

    def pct(self, q: float, which: str = "latencies") -> float:
        xs = sorted(getattr(self, which))
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


async def single_client(url: str, chars: int, repeats: int = 5) -> tuple[float, float]:
    """Streaming: (median ms between characters, median ms to the first character)."""
    gaps: list[float] = []
    firsts: list[float] = []
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(repeats):
            body = {
                "prompt": PROMPTS[i % len(PROMPTS)],
                "max_new_tokens": chars,
                "seed": i,
                "stream": True,
            }
            start = time.perf_counter()
            stamps = []
            async with client.stream("POST", url + "/v1/generate", json=body) as r:
                async for line in r.aiter_lines():
                    if line == "event: chunk":
                        stamps.append(time.perf_counter())
            firsts.append(stamps[0] - start)
            gaps += [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return statistics.median(gaps) * 1000, statistics.median(firsts) * 1000


async def drive(url: str, clients: int, chars: int, seconds: float, max_requests: int) -> Level:
    """``clients`` workers send requests back to back until ``seconds`` have passed."""
    level = Level(clients)
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)

    async def worker(client: httpx.AsyncClient, w: int) -> None:
        for i in range(max_requests):
            if time.perf_counter() > deadline and i > 0:
                return
            body = {
                "prompt": random.choice(PROMPTS),
                "max_new_tokens": chars,
                "seed": w * 100_000 + i,
            }
            start = time.perf_counter()
            try:
                r = await client.post(url + "/v1/generate", json=body)
                ok = r.status_code == 200
                n = len(r.json()["text"]) if ok else 0
                if ok:
                    level.queued.append(r.json()["timing"]["queue_ms"] / 1000)
            except (httpx.HTTPError, ValueError, KeyError):
                ok, n = False, 0
            level.requests += 1
            level.errors += not ok
            level.chars += n
            level.latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        await asyncio.gather(*(worker(client, w) for w in range(clients)))
    level.seconds = time.perf_counter() - start
    return level


def run_all(ckpt: Path, args: argparse.Namespace, tmp: Path) -> tuple[dict, dict]:
    """Both servers up at once; at each client count the batched run, then the unbatched one.

    Back to back rather than one mode after the other: other work on the machine changes
    over minutes, and the ratio of the two modes is the figure that matters. The idle server
    sleeps (its engine thread waits on an event), so it takes no CPU from the driven one.
    """
    modes = {"batched": 64, "unbatched": 1}
    servers = {m: start_server(ckpt, b, tmp / f"{m}.log", args.precision) for m, b in modes.items()}
    try:
        out: dict[str, dict] = {m: {"levels": []} for m in modes}
        for _, url in servers.values():
            asyncio.run(drive(url, 4, args.chars, 1.0, 2))  # warm-up: first calls are slower
        out["batched"]["single"] = asyncio.run(single_client(servers["batched"][1], args.chars))
        for n in args.clients:
            for mode, (_, url) in servers.items():
                level = asyncio.run(drive(url, n, args.chars, args.seconds, args.max_requests))
                out[mode]["levels"].append(level)
                print(
                    f"  {mode} {n:>3} clients: {level.chars_per_s:,.0f} chars/s",
                    file=sys.stderr,
                    flush=True,
                )
        return out["batched"], out["unbatched"]
    finally:
        for proc, _ in servers.values():
            local.stop(proc)


# ----------------------------------------------------------------------------- references


def reference_decode(ckpt: Path, seconds: float) -> dict[str, float]:
    """Characters per second of a plain PyTorch decode loop shaped like the served model.

    nn.Embedding -> nn.LSTM -> nn.Linear over the whole vocabulary -> softmax ->
    torch.multinomial, float32, one thread, at batch 1 and 32: what a user writing the loop
    by hand gets from this hardware. Runs in this process before any server starts.
    """
    import torch
    from torch import nn

    from textgen.model import checkpoint as ckpt_io

    cfg = ckpt_io.load(ckpt)["model_config"]
    vocab, emb_dim, hid = cfg["vocab_size"], cfg["embed_dim"], cfg["hidden_size"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    emb, out = nn.Embedding(vocab, emb_dim), nn.Linear(hid, vocab)
    rnn = nn.LSTM(emb_dim, hid, num_layers=cfg["num_layers"], batch_first=True)
    rates = {}
    try:
        with torch.inference_mode():
            for batch in (1, 32):
                tok, state, steps = torch.zeros(batch, 1, dtype=torch.long), None, 0
                start = time.perf_counter()
                while time.perf_counter() - start < seconds or steps < 20:
                    y, state = rnn(emb(tok), state)
                    tok = torch.multinomial(torch.softmax(out(y[:, -1]), dim=-1), 1)
                    steps += 1
                rates[str(batch)] = batch * steps / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return rates


def decode_bpc(ckpt: Path, data: Path, precision: str) -> float:
    """Test-split bits per character through the serving decode path (``precision``, as
    `textgen serve --precision` takes it) or the float32 model (``fp32-model``): 32 streams
    stepped one character at a time, each from a zero state."""
    import math

    import torch

    from textgen.data.dataset import PreparedCorpus
    from textgen.data.tokenizer import remap_table
    from textgen.inference.decoder import ModelDecoder, make_decoder
    from textgen.model.checkpoint import load_model

    model, vocab, _ = load_model(ckpt)
    corpus = PreparedCorpus.open(data)
    ids = torch.from_numpy(remap_table(corpus.vocab, vocab)[corpus.split("test")].astype("int64"))
    lengths = torch.from_numpy(corpus.token_chars("test")[corpus.split("test")])
    n = len(ids) // 32
    streams, chars = ids[: 32 * n].view(32, n), lengths[: 32 * n].view(32, n)
    decoder = ModelDecoder(model) if precision == "fp32-model" else make_decoder(model, precision)
    nll = 0.0
    with torch.inference_mode():
        state = model.init_state(32)
        for t in range(n - 1):
            logp, state = decoder.step(streams[:, t], state)
            nll -= float(logp.gather(1, streams[:, t + 1, None]).sum())
    return nll / math.log(2) / float(chars[:, 1:].sum())


# ----------------------------------------------------------------------------- report


def report(batched: dict, unbatched: dict, args: argparse.Namespace, ckpt: Path) -> dict:
    ms_per_char, first_ms = batched["single"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\nserving benchmark: {ckpt.name}, {args.chars} chars per request, "
        f"{args.seconds:g} s per level, {os.cpu_count()} CPUs, load average {load} "
        "(other work on the machine slows every figure)"
    )
    print(
        f"single client, streaming: {ms_per_char:.2f} ms per character, "
        f"first character after {first_ms:.1f} ms\n"
    )
    print(
        f"{'mode':<10} {'clients':>7} {'requests':>8} {'errors':>6} {'chars/s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'queued p50 ms':>13}"
    )
    result: dict = {
        "single_client_ms_per_char": round(ms_per_char, 3),
        "single_client_first_char_ms": round(first_ms, 2),
        "chars_per_s": {},
        "p50_ms": {},
        "p99_ms": {},
        "errors": 0,
    }
    for mode, data in (("batched", batched), ("unbatched", unbatched)):
        for key in ("chars_per_s", "p50_ms", "p99_ms"):
            result[key][mode] = {}
        for lv in data["levels"]:
            print(
                f"{mode:<10} {lv.clients:>7} {lv.requests:>8} {lv.errors:>6} "
                f"{lv.chars_per_s:>9,.0f} {lv.pct(0.5):>8.0f} {lv.pct(0.99):>8.0f} "
                f"{lv.pct(0.5, 'queued'):>13.0f}"
            )
            result["chars_per_s"][mode][str(lv.clients)] = round(lv.chars_per_s, 1)
            result["p50_ms"][mode][str(lv.clients)] = round(lv.pct(0.5), 1)
            result["p99_ms"][mode][str(lv.clients)] = round(lv.pct(0.99), 1)
            result["errors"] += lv.errors
    b32 = result["chars_per_s"]["batched"].get("32")
    u32 = result["chars_per_s"]["unbatched"].get("32")
    u1 = result["chars_per_s"]["unbatched"].get("1")
    result["speedup_32"] = round(b32 / u32, 2) if b32 and u32 else None
    ref = batched["reference"]
    result["ref_decode_chars_per_s"] = {k: round(v, 1) for k, v in ref.items()}
    result["ratio_1"] = round(1000 / ms_per_char / ref["1"], 2)
    result["ratio_32"] = round(b32 / ref["32"], 2) if b32 else None
    result["batching_gain"] = round(b32 / u1, 2) if b32 and u1 else None
    result["serving_precision"] = batched["precision"]
    result["serving_bpc"] = round(batched["serving_bpc"], 4)
    result["fp32_bpc"] = round(batched["fp32_bpc"], 4)
    print(
        f"\nplain PyTorch decode loop of the same shape (fp32, one thread): "
        f"{ref['1']:,.0f} chars/s at batch 1, {ref['32']:,.0f} at batch 32"
    )
    print(
        f"ratio_1 (one client, streaming / plain batch 1): {result['ratio_1']:.2f}x (target >= 6)"
    )
    if result["ratio_32"] is not None:
        print(
            f"ratio_32 (32 clients batched / plain batch 32): {result['ratio_32']:.2f}x "
            "(target >= 3)"
        )
        print(
            f"batching_gain (32 clients batched / one client unbatched): "
            f"{result['batching_gain']:.2f}x; batched / unbatched at 32 clients: "
            f"{result['speedup_32']:.2f}x"
        )
    diff = result["serving_bpc"] - result["fp32_bpc"]
    print(
        f"test-split bits/char: serving path ({result['serving_precision']}) "
        f"{result['serving_bpc']:.4f}, float32 model {result['fp32_bpc']:.4f} "
        f"(difference {diff:+.4f}; target <= 0.01); errors: {result['errors']}"
    )
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help="default: the bundled model")
    p.add_argument(
        "--data",
        type=Path,
        default=REPO / "data/prepared/pd1998",
        help="prepared corpus whose test split scores the decode paths (default: pd1998; "
        "`textgen prepare` makes it)",
    )
    p.add_argument("--precision", default="auto", help="serve --precision (default auto)")
    p.add_argument("--ref-seconds", type=float, default=5.0, help="plain loop, per batch size")
    p.add_argument("--clients", default="1,8,32,64", help="concurrency levels (default 1,8,32,64)")
    p.add_argument("--chars", type=int, default=100, help="characters per request (default 100)")
    p.add_argument("--seconds", type=float, default=8.0, help="load per level (default 8)")
    p.add_argument("--max-requests", type=int, default=500, help="per client and level")
    args = p.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    from textgen.inference.decoder import choose_precision
    from textgen.model.checkpoint import default_checkpoint

    with tempfile.TemporaryDirectory(prefix="textgen-bench-") as tmp:
        ckpt = args.checkpoint or default_checkpoint()
        import torch

        precision = choose_precision(args.precision, torch.device("cpu"))
        print(f"decode precision: {precision}; scoring the test split ...", file=sys.stderr)
        bpc = {
            "serving_bpc": decode_bpc(ckpt, args.data, precision),
            "fp32_bpc": decode_bpc(ckpt, args.data, "fp32-model"),
        }
        print("plain PyTorch reference loop ...", file=sys.stderr, flush=True)
        reference = reference_decode(ckpt, args.ref_seconds)
        batched, unbatched = run_all(ckpt, args, Path(tmp))
        batched.update(reference=reference, precision=precision, **bpc)
        result = report(batched, unbatched, args, ckpt)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
