"""Benchmark directed generation: exact shapes, their decoding cost, their compile time.

On the bundled model (or ``--checkpoint``), in this process, driving the engine directly:

1. Exact shape. Poems of each form (五言绝句, 七言绝句, 五言律诗, 七言律诗), half of them with
   acrostic heads, are checked by a form checker written here (not the generator's regex
   code): lines split on ，and 。, line count, characters per line all CJK unified
   ideographs, ，。 alternating with 。 last, heads in place, finish_reason "stop". Then
   samples of a few regexes, each checked with Python's ``re.fullmatch``.
2. Cost. Decoding characters per second, unconstrained against constrained (七言律诗 with and
   without heads, a 200-character regex), at 1 client and at 32 (requests kept in flight,
   refilled as they finish). Both loads draw texts of the same lengths; rounds alternate
   (free, constrained, free, constrained) so that drift on the machine hits both, and the
   medians are reported. Only generated characters count.
3. Compile time. Each form with and without heads and a ~100-character regex, compiled
   against the vocabulary cold (a new Constraints object, its cache empty; a regex's worker
   process is started and warmed with another pattern first) and cached (the second call).
   outlines-core's vocabulary is built once per process and reused by the cold compiles: the
   first compile in the process (which imports outlines-core and builds it) and the cold
   start of the regex worker are shown apart.

Every draw uses temperature 0.8 and top_k 40.

    python benchmarks/directed.py [--checkpoint PATH] [--poems-per-form 50]
        [--samples-per-regex 100] [--seconds 6] [--rounds 2] [--reps 5] [--threads N]

Targets: every poem and every regex sample passes; constrained / unconstrained chars/s >= 0.85
at 1 and at 32 clients; a cold compile <= 50 ms, a cached one far below. Ends with one line of
JSON holding every figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import re
import statistics
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's textgen

from textgen.inference.constraints import Constraints
from textgen.inference.engine import Engine
from textgen.inference.events import GenerationResult
from textgen.inference.generator import TextGenerator
from textgen.inference.request import Request
from textgen.inference.sampling import GenerationConfig

SAMPLING: dict[str, Any] = {"temperature": 0.8, "top_k": 40}
# The forms as this benchmark reads them: (lines, characters per line)
FORMS: dict[str, tuple[int, int]] = {
    "五言绝句": (4, 5),
    "七言绝句": (4, 7),
    "五言律诗": (8, 5),
    "七言律诗": (8, 7),
}
HEADS: dict[int, tuple[str, ...]] = {  # acrostic heads by line count: common characters
    4: ("春夏秋冬", "东南西北", "风花雪月", "山高水长"),
    8: ("一二三四五六七八", "春夏秋冬东南西北", "天地人和国泰民安", "金木水火土日月星"),
}
HAN = "\u4e00-\u9fff"
REGEXES: dict[str, str] = {
    "date": "[0-9]{4}年[0-9]{1,2}月[0-9]{1,2}日",
    "alternation": "(中国|美国|日本)(政府|人民)",
    "phrase": f"[{HAN}]{{2,6}}，[{HAN}]{{2,6}}。",
    "amount": "[1-9][0-9]{0,3}(万|亿)?元",
    "quoted": f"“[{HAN}]{{2,8}}”",
}
LONG_REGEX = f"[{HAN}，。]{{200}}"  # the constrained load's long text
COMPILE_REGEX = (  # a dateline, a speaker and a sentence: the ~100-character regex compiled
    "(新华社|本报|中新社)(北京|上海|广州|南京|武汉|西安|成都|重庆)[0-9]{1,2}月[0-9]{1,2}日电"
    f"（记者[{HAN}]{{2,3}}）[{HAN}]{{2,8}}(表示|指出|认为|强调)，[{HAN}，、]{{10,40}}。"
)
# a lighter ~100-character regex: four clauses of a country, a phrase and a mark
TYPICAL_REGEX = f"(中国|美国|日本)的[{HAN}]{{2,8}}(，|。)" * 4
WARM_REGEX = "[0-9]+"  # warms a fresh regex worker before the timed compile
PROMPTS = ["中国", "人民日报", "今天", "经济发展", "我们要", "新华社北京", "在改革开放中", "世界"]
POEM_PROMPT = "\n"  # the paragraph mark: a new text
WIDTH = 64  # requests in flight for the shape checks


# ----------------------------------------------------------------------------- helpers


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo, else lscpu, else the platform module."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def shown(pattern: str) -> str:
    """A pattern as printed: the ends of the ideograph range written as escapes."""
    return pattern.replace("\u4e00", "\\u4e00").replace("\u9fff", "\\u9fff")


def pad(text: str, width: int) -> str:
    """``text`` left-aligned in ``width`` terminal columns (an ideograph takes two)."""
    wide = sum(unicodedata.east_asian_width(c) in "WF" for c in text)
    return text + " " * max(width - len(text) - wide, 0)


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def config(**kw: Any) -> GenerationConfig:
    return GenerationConfig(**SAMPLING, **kw)


def check_inputs(gen: TextGenerator, engine: Engine) -> None:
    """Every head character is in the vocabulary and every regex compiles; else exit."""
    chars = {c for heads in HEADS.values() for h in heads for c in h}
    missing = sorted(c for c in chars if c not in gen.vocab)
    if missing:
        sys.exit(f"heads use characters the model lacks: {', '.join(missing)}")
    checked = [("long", LONG_REGEX), ("compile", COMPILE_REGEX), ("typical", TYPICAL_REGEX)]
    for name, pattern in [*REGEXES.items(), *checked]:
        try:
            engine.constraints.for_config(config(regex=pattern))
        except ValueError as e:
            sys.exit(f"regex {name} ({shown(pattern)}) does not compile: {e}")


def run_requests(
    engine: Engine, jobs: Sequence[tuple[str, GenerationConfig]], width: int
) -> list[GenerationResult]:
    """Run every (prompt, config) job, ``width`` in flight at a time; results in job order."""
    results: list[GenerationResult | None] = [None] * len(jobs)
    live: dict[int, Request] = {}
    todo = iter(range(len(jobs)))
    pending = True
    while pending or live:
        while pending and len(live) < width:
            i = next(todo, None)
            if i is None:
                pending = False
                break
            live[i] = engine.submit(engine.request(*jobs[i]))
        if live:
            engine.step()
        for i in [i for i, r in live.items() if r.finished]:
            results[i] = live.pop(i).result()
    assert all(r is not None for r in results)  # every job finished
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------- 1. exact shape


def poem_problem(text: str, finish: str, lines: int, chars: int, heads: str) -> str | None:
    """Why ``text`` is not a poem of ``lines`` x ``chars`` with ``heads`` (None: it is one)."""
    if finish != "stop":
        return f"finish_reason {finish}"
    body: list[str] = []
    marks: list[str] = []
    current = ""
    for ch in text:
        if ch in "，。":
            body.append(current)
            marks.append(ch)
            current = ""
        elif unicodedata.name(ch, "").startswith("CJK UNIFIED IDEOGRAPH"):
            current += ch
        else:
            return f"not an ideograph: {ch!r}"
    if current:
        return "text after the last mark"
    if len(body) != lines:
        return f"{len(body)} lines, not {lines}"
    if marks != ["，" if i % 2 == 0 else "。" for i in range(lines)] or marks[-1] != "。":
        return f"punctuation {''.join(marks)}"
    for i, line in enumerate(body):
        if len(line) != chars:
            return f"line {i + 1} has {len(line)} characters, not {chars}"
        if i < len(heads) and line[0] != heads[i]:
            return f"line {i + 1} starts with {line[0]}, not {heads[i]}"
    return None


def shape_forms(engine: Engine, per_form: int) -> dict[str, dict[str, Any]]:
    """Generate ``per_form`` poems of each form (odd seeds with heads) and check each one."""
    out: dict[str, dict[str, Any]] = {}
    for form, (lines, chars) in FORMS.items():
        heads = [
            HEADS[lines][seed // 2 % len(HEADS[lines])] if seed % 2 else ""
            for seed in range(per_form)
        ]
        jobs = [
            (POEM_PROMPT, config(form=form, acrostic=h or None, seed=seed))
            for seed, h in enumerate(heads)
        ]
        results = run_requests(engine, jobs, WIDTH)
        problems = [
            poem_problem(r.text, r.finish_reason, lines, chars, h)
            for r, h in zip(results, heads, strict=True)
        ]
        failed = [(r.text, p) for r, p in zip(results, problems, strict=True) if p is not None]
        out[form] = {
            "pass": len(results) - len(failed),
            "total": len(results),
            "with_heads": sum(1 for h in heads if h),
            "examples": [r.text for r in results[:2]],
            "failures": failed[:3],
        }
    return out


def shape_regexes(engine: Engine, per_regex: int) -> dict[str, dict[str, Any]]:
    """``per_regex`` samples of each regex (a seed each), checked with ``re.fullmatch``."""
    out: dict[str, dict[str, Any]] = {}
    for k, (name, pattern) in enumerate(REGEXES.items()):
        jobs = [
            (PROMPTS[j % len(PROMPTS)], config(regex=pattern, seed=10_000 * k + j))
            for j in range(per_regex)
        ]
        results = run_requests(engine, jobs, WIDTH)
        ok = [
            r.finish_reason == "stop" and re.fullmatch(pattern, r.text) is not None for r in results
        ]
        out[name] = {
            "pattern": pattern,
            "pass": sum(ok),
            "total": len(results),
            "examples": [r.text for r in results[:3]],
            "failures": [
                (r.text, r.finish_reason) for r, g in zip(results, ok, strict=True) if not g
            ][:3],
        }
    return out


# ----------------------------------------------------------------------------- 2. cost


def constrained_job(i: int) -> tuple[str, GenerationConfig]:
    """The constrained load: 七言律诗 without heads, with heads, a 200-character regex."""
    heads = HEADS[8][i // 3 % len(HEADS[8])]
    kinds = (
        {"form": "七言律诗"},
        {"form": "七言律诗", "acrostic": heads},
        {"regex": LONG_REGEX},
    )
    return PROMPTS[i % len(PROMPTS)], config(max_new_tokens=256, seed=i, **kinds[i % 3])


def free_job(i: int) -> tuple[str, GenerationConfig]:
    """The unconstrained load: texts as long as the constrained load's (64, 64, 200)."""
    length = (64, 64, 200)[i % 3]
    return PROMPTS[i % len(PROMPTS)], config(max_new_tokens=length, seed=i)


def drive(
    engine: Engine,
    job: Callable[[int], tuple[str, GenerationConfig]],
    clients: int,
    seconds: float,
    first: int,
) -> float:
    """Generated characters per second with ``clients`` requests kept in flight."""
    live: list[Request] = []
    chars, i = 0, first
    start = time.perf_counter()
    while True:
        while len(live) < clients:
            live.append(engine.submit(engine.request(*job(i))))
            i += 1
        engine.step()
        chars += sum(len(s.text) for r in live if r.finished for s in r.samples)
        live = [r for r in live if not r.finished]
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    chars += sum(len(s.text) for r in live for s in r.samples)  # partial texts count too
    for r in live:
        r.cancel()
    while not engine.idle:
        engine.step()
    return chars / elapsed


def cost(engine: Engine, seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    """Median chars/s of each load at 1 and 32 clients, rounds alternating free, constrained."""
    # warm-up: every constraint compiled and its masks built, the decoder's first calls done
    warm = [constrained_job(i) for i in range(3 * len(HEADS[8]))] + [free_job(i) for i in range(3)]
    run_requests(engine, warm, WIDTH)
    out: dict[str, dict[str, Any]] = {}
    for clients in (1, 32):
        rates: dict[str, list[float]] = {"free": [], "constrained": []}
        for rnd in range(rounds):
            for mode, job in (("free", free_job), ("constrained", constrained_job)):
                rate = drive(engine, job, clients, seconds, first=100_000 * (rnd + 1))
                rates[mode].append(rate)
                print(
                    f"  {clients:>2} clients, {mode}: {rate:,.0f} chars/s",
                    file=sys.stderr,
                    flush=True,
                )
        out[str(clients)] = {
            "free": statistics.median(rates["free"]),
            "constrained": statistics.median(rates["constrained"]),
            "rounds": rates,
        }
    return out


# ----------------------------------------------------------------------------- 3. compile time


def cold_and_cached(
    engine: Engine, cfg: GenerationConfig, reps: int, warm: GenerationConfig | None = None
) -> dict[str, float]:
    """Median ms of a compile on a new Constraints (cold) and of the same call again (cached).

    ``warm``: compiled first on each new Constraints (starts and warms the regex worker);
    its median time is returned as ``warm_ms``.
    """
    cold: list[float] = []
    cached: list[float] = []
    warms: list[float] = []
    for _ in range(reps):
        fresh = Constraints(engine.vocab, engine.to_model_text)
        try:
            if warm is not None:
                warms.append(timed_ms(functools.partial(fresh.for_config, warm)))
            cold.append(timed_ms(functools.partial(fresh.for_config, cfg)))
            cached.append(timed_ms(functools.partial(fresh.for_config, cfg)))
        finally:
            fresh.close()
    out = {"cold": statistics.median(cold), "cached": statistics.median(cached)}
    if warms:
        out["warm_ms"] = statistics.median(warms)
    return out


def compile_times(engine: Engine, reps: int) -> dict[str, dict[str, float]]:
    """Cold and cached compile times of each form (with and without heads) and of a regex."""
    out: dict[str, dict[str, float]] = {}
    for form, (lines, _) in FORMS.items():
        heads = HEADS[lines][0]
        out[form] = cold_and_cached(engine, config(form=form), reps)
        out[f"{form}+{heads}"] = cold_and_cached(engine, config(form=form, acrostic=heads), reps)
    regex = cold_and_cached(engine, config(regex=COMPILE_REGEX), reps, config(regex=WARM_REGEX))
    out["worker_start"] = {"cold": regex.pop("warm_ms")}
    out["regex"] = regex
    typical = config(regex=TYPICAL_REGEX)
    out["regex_typical"] = cold_and_cached(engine, typical, reps, config(regex=WARM_REGEX))
    out["regex_typical"].pop("warm_ms")
    return out


def first_compile_ms(engine: Engine) -> float:
    """The process's first compile (a form): imports outlines-core, builds its vocabulary."""
    fresh = Constraints(engine.vocab, engine.to_model_text)
    return timed_ms(lambda: fresh.for_config(config(form="五言绝句")))


# ----------------------------------------------------------------------------- report


def report_shape(forms: dict[str, dict[str, Any]], regexes: dict[str, dict[str, Any]]) -> None:
    print(f"\n1. exact shape (temperature 0.8, top_k 40; poems from the prompt {POEM_PROMPT!r})")
    print(f"{'form':<10} {'poems':>6} {'with heads':>10} {'pass':>9}   example")
    for form, r in forms.items():
        passed = f"{r['pass']}/{r['total']}"
        example = r["examples"][-1] if r["examples"] else ""
        print(f"{pad(form, 10)} {r['total']:>6} {r['with_heads']:>10} {passed:>9}   {example}")
        for text, why in r["failures"]:
            print(f"{'':<10} FAIL {why}: {text!r}")
    print(f"\n{'regex':<12} {'pass':>9}   pattern, then examples")
    for name, r in regexes.items():
        passed = f"{r['pass']}/{r['total']}"
        print(f"{name:<12} {passed:>9}   {shown(r['pattern'])}   {' | '.join(r['examples'])}")
        for text, why in r["failures"]:
            print(f"{'':<12} FAIL (finish_reason {why}): {text!r}")


def report_cost(rates: dict[str, dict[str, Any]], seconds: float, rounds: int) -> dict[str, float]:
    print(
        f"\n2. cost: decoding chars/s, median of {rounds} rounds of {seconds:g} s per load, "
        "rounds alternating (constrained: 七言律诗, 七言律诗 with heads, "
        f"{shown(LONG_REGEX)}; free: texts of the same lengths)"
    )
    print(f"{'clients':>7} {'free':>10} {'constrained':>12} {'ratio':>7}   (target >= 0.85)")
    ratios = {}
    for clients, r in rates.items():
        ratios[clients] = r["constrained"] / r["free"]
        print(
            f"{clients:>7} {r['free']:>10,.0f} {r['constrained']:>12,.0f} {ratios[clients]:>7.3f}"
        )
    return ratios


def report_compile(times: dict[str, dict[str, float]], first_ms: float, reps: int) -> None:
    print(
        f"\n3. compile time, ms, median of {reps} (cold: a new Constraints, its cache empty; "
        "target <= 50 cold, cached far below)"
    )
    print(f"{'pattern':<28} {'cold':>9} {'cached':>9}")
    for name, t in times.items():
        if name == "worker_start":
            continue
        label = {
            "regex": f"regex ({len(COMPILE_REGEX)} chars)",
            "regex_typical": f"regex, typical ({len(TYPICAL_REGEX)} chars)",
        }.get(name, name)
        print(f"{pad(label, 28)} {t['cold']:>9.2f} {t['cached']:>9.4f}")
    print(
        f"regex worker, cold start to its first answer ({WARM_REGEX!r}): "
        f"{times['worker_start']['cold']:.0f} ms; the process's first compile (imports "
        f"outlines-core, builds its vocabulary): {first_ms:.0f} ms"
    )
    print(f"the timed regex: {shown(COMPILE_REGEX)}")
    print(f"the typical one: {shown(TYPICAL_REGEX)}")


def summary(
    forms: dict[str, dict[str, Any]],
    regexes: dict[str, dict[str, Any]],
    rates: dict[str, dict[str, Any]],
    ratios: dict[str, float],
    times: dict[str, dict[str, float]],
    first_ms: float,
    gen: TextGenerator,
    threads: int,
) -> dict[str, Any]:
    """The figures of the JSON line."""
    return {
        "forms_pass": sum(r["pass"] for r in forms.values()),
        "forms_total": sum(r["total"] for r in forms.values()),
        "forms": {f: {"pass": r["pass"], "total": r["total"]} for f, r in forms.items()},
        "regex_pass": sum(r["pass"] for r in regexes.values()),
        "regex_total": sum(r["total"] for r in regexes.values()),
        "regexes": {n: {"pass": r["pass"], "total": r["total"]} for n, r in regexes.items()},
        "chars_per_s": {
            c: {"free": round(r["free"], 1), "constrained": round(r["constrained"], 1)}
            for c, r in rates.items()
        },
        "ratio_1": round(ratios["1"], 3),
        "ratio_32": round(ratios["32"], 3),
        "compile_ms": {
            **{k: {m: round(v, 4) for m, v in t.items()} for k, t in times.items()},
            "first_in_process": round(first_ms, 2),
        },
        "cpu": cpu_model(),
        "threads": threads,
        "precision": gen.info.get("precision"),
        "model": gen.path.name,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, help="default: the bundled model")
    p.add_argument("--poems-per-form", type=int, default=50, help="seeds per form (default 50)")
    p.add_argument("--samples-per-regex", type=int, default=100, help="default 100")
    p.add_argument("--seconds", type=float, default=6.0, help="per load and round (default 6)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of each load (default 2)")
    p.add_argument("--reps", type=int, default=5, help="compiles per figure (default 5)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--precision", default="auto", help="decode precision (default auto)")
    args = p.parse_args()
    import torch

    print(f"cpu: {cpu_model()}", flush=True)
    gen = TextGenerator.from_checkpoint(args.checkpoint, args.threads, args.precision)
    threads = torch.get_num_threads()
    print(f"model: {gen.path.name}, {gen.info['precision']} decode, {threads} threads", flush=True)
    engine = gen.engine(max_batch=WIDTH)
    try:
        first_ms = first_compile_ms(engine)
        check_inputs(gen, engine)
        print("1. exact shape ...", file=sys.stderr, flush=True)
        forms = shape_forms(engine, args.poems_per_form)
        regexes = shape_regexes(engine, args.samples_per_regex)
        report_shape(forms, regexes)
        print("\n2. cost ...", file=sys.stderr, flush=True)
        rates = cost(engine, args.seconds, args.rounds)
        ratios = report_cost(rates, args.seconds, args.rounds)
        times = compile_times(engine, args.reps)
        report_compile(times, first_ms, args.reps)
    finally:
        engine.constraints.close()
    result = summary(forms, regexes, rates, ratios, times, first_ms, gen, threads)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
