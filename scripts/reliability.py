"""Reliability checks that try to break textgen, with the figures printed (`make reliability`).

    python scripts/reliability.py load [--clients 64 --seconds 60 --checkpoint PATH]
    python scripts/reliability.py kill [--trials 20]
    python scripts/reliability.py all

load  starts `textgen serve` (the bundled model unless --checkpoint) on a free loopback port,
      warms it up with the same traffic, then runs --clients concurrent streaming clients for
      --seconds; a third of them drop their connection at a random point of each stream.
      Passes when no request got a 5xx or a broken stream, the engine's queue depth, active
      sequences and requests in flight return to 0, and the server's RSS after the run is
      within 10% of its RSS after the warm-up.
kill  trains a small LSTM on a slice of the real corpus and SIGKILLs `textgen train --resume`
      at random moments, --trials times. After every kill the latest checkpoint must load
      (weights_only) and be no older than the one before; then the run is resumed to the end
      and its per-step losses must equal those of a run that was never interrupted.

Exits 1 when a promise is broken. The last line of output is the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/
from devtools import local_server as local

PROMPTS = ["中国", "人民", "新华社北京１月１日电", "经济", "今天", "改革开放", "上海", "我们"]


# ----------------------------------------------------------------------------- load


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Tally:
    def __init__(self) -> None:
        self.completed = self.dropped = self.rejected = 0
        self.errors: list[str] = []


async def one_stream(
    http: httpx.AsyncClient, url: str, rng: random.Random, drop: bool, tally: Tally
) -> None:
    """One streaming request; ``drop``: leave after a random number of events."""
    openai = rng.random() < 0.5
    body = {
        "prompt": rng.choice(PROMPTS),
        "stream": True,
        "seed": rng.randrange(2**31),
        "temperature": rng.choice([0.5, 0.8, 1.0]),
        "top_p": rng.choice([0.9, 1.0]),
    }
    n = rng.randint(20, 300)
    body.update({"max_tokens": n} if openai else {"max_new_tokens": n})
    path = "/v1/completions" if openai else "/v1/generate"
    leave_after = rng.randint(1, n) if drop else None
    events, done = 0, False
    async with http.stream("POST", url + path, json=body) as r:
        if r.status_code == 429:
            tally.rejected += 1
            return
        if r.status_code != 200:
            tally.errors.append(f"{path} -> {r.status_code}: {(await r.aread())[:200]!r}")
            return
        async for line in r.aiter_lines():
            if line.startswith("event: error"):
                tally.errors.append(f"{path}: error event in stream")
            if line in ("event: done", "data: [DONE]"):
                done = True
            if line.startswith("data: ") and line != "data: [DONE]":
                events += 1
                if leave_after is not None and events >= leave_after:
                    tally.dropped += 1
                    return  # leaving the block closes the connection mid-stream
    if done:
        tally.completed += 1
    elif leave_after is None:
        tally.errors.append(f"{path}: stream ended without its done marker after {events} events")


async def client(url: str, seed: int, drop: bool, seconds: float, tally: Tally) -> None:
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    auth = {"Authorization": f"Bearer {LOAD_KEY}"}  # the load server has API keys on
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), headers=auth) as http:
        while time.monotonic() < end:
            try:
                await one_stream(http, url, rng, drop, tally)
            except httpx.HTTPError as e:  # a transport failure is a server failure here
                tally.errors.append(f"{type(e).__name__}: {e}")


async def traffic(url: str, clients: int, seconds: float, seed: int) -> Tally:
    tally = Tally()
    droppers = set(random.Random(seed).sample(range(clients), clients // 3))
    await asyncio.gather(
        *(client(url, seed * 1000 + i, i in droppers, seconds, tally) for i in range(clients))
    )
    return tally


LOAD_KEY = "reliability-load-key"
IDLE_GAUGES = ("textgen_queue_depth", "textgen_active_sequences", "textgen_requests_in_flight")


def wait_idle(url: str, timeout: float = 30.0) -> dict[str, float]:
    end = time.monotonic() + timeout
    while True:
        metrics = local.scrape(url)
        gauges = {n: metrics[n] for n in IDLE_GAUGES}
        if not any(gauges.values()) or time.monotonic() > end:
            return gauges
        time.sleep(0.2)


def server_5xx(url: str) -> int:
    samples = local.scrape(url).items()
    return int(
        sum(v for k, v in samples if k.startswith("textgen_requests_total{") and 'status="5' in k)
    )


def run_load(args: argparse.Namespace) -> dict:
    log = Path(tempfile.mkdtemp(prefix="textgen-load-")) / "serve.log"
    env = {**os.environ, "TEXTGEN_API_KEYS": LOAD_KEY}  # and every client sends the key
    flags = ["--checkpoint", args.checkpoint] if args.checkpoint else []
    proc, url = local.spawn(log, *flags, env=env)
    try:
        print(f"load: server pid {proc.pid} at {url}, RSS at start {rss_mb(proc.pid):.0f} MB")
        warm = asyncio.run(traffic(url, args.clients, args.warmup_seconds, seed=1))
        wait_idle(url)
        rss_warm = rss_mb(proc.pid)
        print(f"load: warm-up {warm.completed} streams done, RSS {rss_warm:.0f} MB")
        t0 = time.monotonic()
        tally = asyncio.run(traffic(url, args.clients, args.seconds, seed=2))
        took = time.monotonic() - t0
        gauges = wait_idle(url)
        time.sleep(1.0)
        rss_after = rss_mb(proc.pid)
        fivexx = server_5xx(url)
        alive = httpx.get(url + "/health", timeout=10).status_code == 200
        keyless = httpx.post(url + "/v1/generate", json={"prompt": "中国"}, timeout=10).status_code
    finally:
        local.stop(proc)
    growth = rss_after / rss_warm - 1
    logged = [ln for ln in log.read_text().splitlines() if "Traceback" in ln or "ERROR" in ln]
    result = {
        "clients": args.clients,
        "seconds": round(took, 1),
        "streams_completed": tally.completed,
        "streams_dropped_by_client": tally.dropped,
        "rejected_429": tally.rejected,
        "client_errors": len(tally.errors),
        "server_5xx": fivexx,
        "server_log_errors": len(logged),
        "idle_gauges_after": gauges,
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_after_run_mb": round(rss_after, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "healthy_after": alive,
        "keyless_request_status": keyless,
    }
    for e in tally.errors[:10]:
        print("load: ERROR", e)
    print(
        f"load: {args.clients} clients for {took:.0f} s: {tally.completed} streams completed, "
        f"{tally.dropped} dropped by their client, {tally.rejected} x 429, "
        f"{len(tally.errors)} client errors, {fivexx} server 5xx, {len(logged)} errors in the "
        f"server log; gauges after: {gauges}; "
        f"RSS {rss_warm:.0f} -> {rss_after:.0f} MB ({100 * growth:+.1f}%)"
    )
    result["ok"] = bool(
        not tally.errors
        and not fivexx
        and not logged
        and not any(gauges.values())
        and abs(growth) <= 0.10
        and alive
        and keyless == 401
        and tally.completed > 0
        and tally.dropped > 0
    )
    return result


# ----------------------------------------------------------------------------- kill


def train_cmd(data: Path, out: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "textgen",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--cell",
        "lstm",
        "--embed-dim",
        "32",
        "--hidden-size",
        "64",
        "--layers",
        "2",
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--max-steps",
        str(steps),
        "--eval-every",
        "100",
        "--save-every",
        "5",
        "--warmup-steps",
        "10",
        "--seed",
        "7",
        "--precision",
        "fp32",
        "--threads",
        "1",
        "--no-progress",
    ]


def losses(run: Path) -> dict[int, float]:
    """Per-step training losses in ``run``/metrics.jsonl (a line torn by a kill is skipped)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "loss" in row:
            out[row["step"]] = row["loss"]
    return out


def wait_for_new_step(metrics: Path, after: int, proc: subprocess.Popen) -> None:
    """Until ``metrics`` holds a row past step ``after`` (or the process ends)."""
    while proc.poll() is None:
        if metrics.exists():
            text = metrics.read_text()
            tail = text[text.rfind("{", 0, max(0, len(text) - 1)) :]
            try:
                if json.loads(tail)["step"] > after:
                    return
            except (ValueError, KeyError):
                pass  # a row being written
        time.sleep(0.05)


def prepare_slice(work: Path) -> Path:
    from textgen.data.corpus import default_corpus_path

    src = work / "slice.txt"
    with open(default_corpus_path(), encoding="utf-8") as f:
        src.write_text(
            "".join(line for _, line in zip(range(600), f, strict=False)), encoding="utf-8"
        )
    data = work / "prepared"
    cmd = [
        sys.executable,
        "-m",
        "textgen",
        "prepare",
        "--source",
        str(src),
        "--out",
        str(data),
        "--no-progress",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    return data


def run_kill(args: argparse.Namespace) -> dict:
    from textgen.model import checkpoint

    work = Path(tempfile.mkdtemp(prefix="textgen-kill-"))
    data = prepare_slice(work)
    steps = args.steps
    t0 = time.monotonic()
    subprocess.run(train_cmd(data, work / "whole", steps), check=True, capture_output=True)
    whole_s = time.monotonic() - t0
    print(f"kill: uninterrupted run of {steps} steps took {whole_s:.1f} s")
    rng = random.Random(args.seed)
    run = work / "killed"
    last_step, logged, trials, survived, failures = 0, 0, 0, 0, []
    while trials < args.trials:
        proc = subprocess.Popen(
            [*train_cmd(data, run, steps), "--resume"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if rng.random() < 0.25:  # during start-up: imports, loading and resuming
            time.sleep(rng.uniform(0.0, 2.0))
        else:  # during training, once this process has logged a step of its own
            wait_for_new_step(run / "metrics.jsonl", logged, proc)
            time.sleep(rng.uniform(0.0, args.max_delay))
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-500:]
            if proc.returncode != 0:
                failures.append(f"trial {trials}: exited {proc.returncode} before the kill: {err}")
            break  # finished the run: no more trials possible
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        trials += 1
        logged = max(losses(run), default=0) if (run / "metrics.jsonl").exists() else 0
        path = run / "last.pt"
        if not path.exists():
            step = 0  # killed before the first save: nothing to load yet
        else:
            try:
                step = checkpoint.load(path)["step"]
            except Exception as e:
                failures.append(f"trial {trials}: last.pt does not load: {e}")
                continue
        if step < last_step:
            failures.append(f"trial {trials}: checkpoint went back from step {last_step} to {step}")
        survived += 1
        last_step = max(last_step, step)
        print(f"kill: trial {trials:2d}: SIGKILL, latest checkpoint step {step}: loads")
    final = subprocess.run(
        [*train_cmd(data, run, steps), "--resume"], capture_output=True, text=True
    )
    if final.returncode != 0:
        failures.append(f"final resume exited {final.returncode}: {final.stderr[-500:]}")
    same = final.returncode == 0 and losses(run) == losses(work / "whole")
    if not same:
        failures.append("losses after the kills differ from the uninterrupted run")
    for f in failures:
        print("kill: FAIL", f)
    print(
        f"kill: {trials} SIGKILL trials, {survived} left a loadable checkpoint, resumed run's "
        f"{len(losses(run))} per-step losses {'==' if same else '!='} uninterrupted run's"
    )
    return {
        "kill_trials": trials,
        "checkpoint_loaded_after": survived,
        "losses_identical_to_uninterrupted": same,
        "ok": not failures and trials >= args.trials,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=["load", "kill", "all"])
    ap.add_argument("--checkpoint", help="model to serve (default: the bundled one)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60.0, help="load: measured run")
    ap.add_argument("--warmup-seconds", type=float, default=20.0)
    ap.add_argument("--trials", type=int, default=20, help="kill: SIGKILL trials")
    ap.add_argument("--steps", type=int, default=1500, help="kill: steps of the training run")
    ap.add_argument(
        "--max-delay", type=float, default=1.0, help="kill: latest kill after training starts, s"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = {}
    if args.what in ("kill", "all"):
        results["kill"] = run_kill(args)
    if args.what in ("load", "all"):
        results["load"] = run_load(args)
    ok = all(r["ok"] for r in results.values())
    print("reliability:", "PASSED" if ok else "FAILED")
    print(json.dumps(results))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
