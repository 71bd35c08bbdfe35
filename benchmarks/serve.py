"""Benchmark `textgen serve`: latency per character and throughput, batched vs unbatched.

Starts `textgen serve` as a subprocess on a free 127.0.0.1 port and drives it from this
process with concurrent httpx clients: per-character streaming latency for one client, then
aggregate characters per second and request latency (p50/p99) for 1, 8, 32 and 64 clients,
once with continuous batching (the default) and once with it switched off
(TEXTGEN_MAX_BATCH=1: the engine advances one request at a time).

    python benchmarks/serve.py [--checkpoint PATH] [--clients 1,8,32,64] [--seconds 8]

Without --checkpoint it serves a randomly initialised model shaped like the real one
(2x512 LSTM, embedding 256, adaptive softmax, the 4,689-character vocabulary): the work per
character is the same as for a trained model. Target: with 32 clients batching gives >= 8x
the aggregate throughput of unbatched serving, with zero errors.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/
from devtools import local_server as local

PROMPTS = ["中国", "人民日报", "今天", "经济发展", "我们要", "新华社北京", "在改革开放中", "世界"]
REPO = Path(__file__).resolve().parent.parent


def make_checkpoint(path: Path) -> Path:
    """A random checkpoint with the real model's shape and the trainer's dict keys."""
    import torch

    from textgen import __version__
    from textgen.data.normalize import describe
    from textgen.model import checkpoint
    from textgen.model.charlm import CharLM
    from textgen.model.config import ModelConfig
    from textgen.train.config import TrainConfig
    from textgen.train.snapshot import Health

    vocab = _vocab()
    cfg = ModelConfig(
        vocab_size=len(vocab.tokens),
        embed_dim=256,
        hidden_size=512,
        num_layers=2,
        softmax="adaptive",
    )
    torch.manual_seed(0)
    model = CharLM(cfg)
    train = TrainConfig()
    checkpoint.save(
        {
            "kind": "train",
            "textgen_version": __version__,
            "model_config": cfg.to_dict(),
            "model": model.state_dict(),
            "tokenizer": {"vocab": vocab.to_dict(), "level": "char", "normalization": describe()},
            "train_config": asdict(train),
            "data": {"path": "", "sources": []},
            "step": 0,
            "optimizer": {},
            "scheduler": {"name": train.schedule, "step": 0, "lr": train.lr},
            "scaler": {},
            "rng": {"torch": torch.get_rng_state(), "cuda": []},
            "data_position": {"pos": 0, "epoch": 0},
            "hidden_state": [],
            "best_val_bpc": None,
            "val_bpc": None,
            "evals_since_best": 0,
            "health": asdict(Health()),
            "precision": "fp32",
        },
        path,
    )
    return path


def _vocab():
    """The prepared default corpus's vocabulary if present, else 4,689 synthetic characters."""
    from textgen.data.tokenizer import UNK, Vocab

    prepared = REPO / "data" / "prepared" / "pd1998" / "vocab.json"
    if prepared.is_file():
        return Vocab.from_dict(json.loads(prepared.read_text(encoding="utf-8")))
    punct = list("，。、：；！？（）《》\n") + [str(d) for d in range(10)]
    hanzi = [chr(cp) for cp in range(0x4E00, 0x4E00 + 4689 - 1 - len(punct))]
    return Vocab([UNK, *punct, *hanzi])


# ----------------------------------------------------------------------------- the server


def start_server(ckpt: Path, max_batch: int, log: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "TEXTGEN_MAX_BATCH": str(max_batch), "TEXTGEN_MAX_QUEUE": "256"}
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
    servers = {m: start_server(ckpt, b, tmp / f"{m}.log") for m, b in modes.items()}
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
    result["speedup_32"] = round(b32 / u32, 2) if b32 and u32 else None
    if result["speedup_32"] is not None:
        verdict = "meets" if result["speedup_32"] >= 8 and not result["errors"] else "misses"
        print(
            f"\nbatching speed-up at 32 clients: {result['speedup_32']:.1f}x "
            f"({verdict} the >= 8x, zero-error target)"
        )
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, help="default: a random model of the real shape")
    p.add_argument("--clients", default="1,8,32,64", help="concurrency levels (default 1,8,32,64)")
    p.add_argument("--chars", type=int, default=100, help="characters per request (default 100)")
    p.add_argument("--seconds", type=float, default=8.0, help="load per level (default 8)")
    p.add_argument("--max-requests", type=int, default=500, help="per client and level")
    args = p.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="textgen-bench-") as tmp:
        ckpt = args.checkpoint or make_checkpoint(Path(tmp) / "model.pt")
        batched, unbatched = run_all(ckpt, args, Path(tmp))
        result = report(batched, unbatched, args, ckpt)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
