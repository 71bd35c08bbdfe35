"""`textgen generate` and `textgen serve`: parse arguments, call the engine or the server, print."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from textgen.cli.command import add_command
from textgen.data.script import SCRIPTS
from textgen.inference.limits import BOUNDS, MAX_STOP_CHARS, MAX_STOP_STRINGS
from textgen.inference.limits import DECODE_PRECISIONS as PRECISIONS

GENERATE_HELP = "continue a prompt, streaming characters to the terminal"
GENERATE_DESCRIPTION = (
    "Continue a prompt with a trained checkpoint and stream the text as it is "
    "generated. The prompt is normalised the way the training corpus was; characters "
    "outside the vocabulary become <unk> (and are counted). A prompt or --stop in the "
    "other Chinese script than the model's (Traditional for the bundled Simplified "
    "model) is converted with OpenCC first. With no --checkpoint it uses "
    "$TEXTGEN_CHECKPOINT, else the bundled default model."
)
GENERATE_EPILOG = """\
examples:
  textgen generate --prompt 中国                      # the bundled model (or $TEXTGEN_CHECKPOINT)
  textgen generate --prompt 中国 --max-new-tokens 50 --temperature 0.8 --top-k 40 --seed 1 \\
                   --stop 。 --checkpoint runs/lstm
  textgen generate --prompt 今天 --temperature 0      # greedy: always the same text
  textgen generate --prompt 经济 --n 3 --json         # three samples, then one line of JSON
  textgen generate --prompt 春眠不覺曉 --stop 。      # a Traditional prompt: answered in Traditional
  textgen generate --prompt 中国 --script traditional # a Simplified prompt, Traditional output
"""

SERVE_HELP = "HTTP API, OpenAI-compatible completions and a playground page"
SERVE_DESCRIPTION = (
    "Serve a checkpoint over HTTP: POST /v1/generate (JSON or Server-Sent Events), "
    "POST /v1/completions and GET /v1/models (OpenAI-compatible), GET /health "
    "(liveness), GET /ready (readiness), GET /v1/model, GET /metrics (Prometheus) and "
    "a playground page at /. Requests in flight are continuously batched: one model "
    "step advances all of them. With API keys set, /v1/* needs 'Authorization: Bearer "
    "KEY'. On SIGTERM /ready turns 503 and requests in flight finish before it exits."
)
SERVE_EPILOG = """\
examples:
  textgen serve --checkpoint runs/lstm               # http://127.0.0.1:8000/ is the playground
  textgen serve --port 9000 --max-batch 32 --max-queue 128
  TEXTGEN_CHECKPOINT=runs/lstm TEXTGEN_CORS_ORIGINS=https://example.org textgen serve

  curl -s localhost:8000/v1/generate -H 'content-type: application/json' \\
       -d '{"prompt": "中国", "max_new_tokens": 30, "seed": 1}'
  curl -sN localhost:8000/v1/generate -H 'content-type: application/json' \\
       -d '{"prompt": "中国", "stream": true}'
  curl -s localhost:8000/v1/generate -H 'content-type: application/json' \\
       -d '{"prompt": "春眠不覺曉", "max_new_tokens": 20, "script": "traditional"}'

  TEXTGEN_API_KEYS=k1,k2 textgen serve --host 0.0.0.0 --log-format json
  curl -s localhost:8000/v1/models -H 'Authorization: Bearer k1' -H 'X-Request-Id: abc-1'

every flag also reads TEXTGEN_<FLAG> from the environment (TEXTGEN_MAX_BATCH=1 turns batching
off); flags win. API keys come from TEXTGEN_API_KEYS or --api-key-file only. OpenAPI docs are
at /docs, the schema at /openapi.json, metrics at /metrics, readiness at /ready.
"""


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "generate", GENERATE_HELP, GENERATE_DESCRIPTION, GENERATE_EPILOG)
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file or run folder")
    bounded = {  # flag -> (type, default, help); the bounds come from textgen.inference.limits
        "max_new_tokens": (int, 200, "at most this many characters"),
        "temperature": (float, 1.0, "0 = greedy"),
        "top_k": (int, 0, "sample from the k likeliest (0 = off)"),
        "top_p": (float, 1.0, "nucleus probability mass (1 = off)"),
        "repetition_penalty": (
            float,
            1.0,
            "> 1 discourages characters seen in the last 64 (1 = off)",
        ),
    }
    for name, (kind, default, text) in bounded.items():
        p.add_argument(
            flag(name),
            type=checked(name, kind),
            default=default,
            help=f"{text}; {BOUNDS[name].describe()} (default {default})",
        )
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help=f"stop before this string (at most {MAX_STOP_CHARS} chars); repeat for "
        f"up to {MAX_STOP_STRINGS} (e.g. --stop 。)",
    )
    p.add_argument(
        "--seed",
        type=checked("seed", int),
        help=f"same seed, same text; {BOUNDS['seed'].describe()}",
    )
    p.add_argument(
        "--n",
        type=checked("n", int),
        default=1,
        help=f"independent samples; {BOUNDS['n'].describe()} (default 1)",
    )
    p.add_argument(
        "--script",
        choices=SCRIPTS,
        default="auto",
        help="Chinese script of the output: auto (default) answers in the prompt's "
        "script (the model's if the prompt shows neither); simplified (简体) or "
        "traditional (繁體) convert the output with OpenCC",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="decode steps: auto (int8 where the CPU has an int8 engine, else bf16 where it "
        "pays, else fp32), or force one",
    )
    p.add_argument("--json", action="store_true", help="print the result as one line of JSON")
    p.set_defaults(func=cmd_generate)


def checked(name: str, kind: type) -> Callable[[str], Any]:
    """An argparse ``type`` that reads a number and checks it against ``BOUNDS[name]``."""

    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{name} must be {what}, got {raw!r}") from None
        try:
            BOUNDS[name].check(name, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return parse


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def cmd_generate(args: argparse.Namespace) -> int:
    from textgen.inference.generator import GenerationConfig, TextGenerator
    from textgen.inference.sampling import Chunk, Done

    config = GenerationConfig.from_fields(vars(args))  # the flags use the config's names
    gen = TextGenerator.from_checkpoint(args.checkpoint, args.threads, args.precision)
    result = None
    for event in gen.stream(args.prompt, config):
        if isinstance(event, Chunk) and config.n == 1:  # n > 1: samples printed at the end
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Done):
            result = event.result
    assert result is not None
    if config.n > 1:
        for s in result.samples:
            print(f"[{s.index}] {s.text}")
    else:
        print()
    _report(result)
    if args.json:
        from textgen.server.responses import generate_response

        print(generate_response(result, gen.model_id).model_dump_json())
    return 0


def _report(result) -> None:
    t = result.timing
    unk = ""
    if result.unknown_prompt_chars:
        unk = f", {result.unknown_prompt_chars} prompt chars not in the vocabulary"
    print(
        f"({result.finish_reason}: {result.completion_tokens} chars in {t['total_ms']:.0f} ms, "
        f"{t['chars_per_s']:.0f} chars/s{unk})",
        file=sys.stderr,
    )


METAVARS: dict[Any, str] = {int: "N", float: "SECONDS"}


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", SERVE_HELP, SERVE_DESCRIPTION, SERVE_EPILOG)
    from textgen.server.settings import Settings, env_var

    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("flag") is False:
            continue  # a secret: environment only
        default = "none" if field.default in (None, ()) else field.default
        help_text = f"{field.description} (default {default}; {env_var(name)})"
        kind: Any = field.annotation  # int, float, bool, a Literal, or str below
        choices: tuple[Any, ...] | None = None
        if kind is bool:
            p.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=help_text)
            continue
        if get_origin(kind) is Literal:
            kind, choices = str, get_args(kind)
        elif kind not in (int, float):
            kind = str  # a path, a host, comma-separated origins
        metavar: Any = None if choices else extra.get("metavar", METAVARS.get(kind, name.upper()))
        p.add_argument(flag(name), type=kind, choices=choices, metavar=metavar, help=help_text)
    p.set_defaults(func=cmd_serve)


def serve_settings(args: argparse.Namespace):
    """``TEXTGEN_*`` variables, overridden by the flags given to `textgen serve`."""
    from textgen.server.settings import Settings

    return Settings.from_env(**{k: v for k, v in vars(args).items() if k in Settings.model_fields})


def cmd_serve(args: argparse.Namespace) -> int:
    from textgen.model.checkpoint import default_checkpoint, resolve
    from textgen.server.run import serve

    settings = serve_settings(args)
    settings.keys()  # a missing or empty --api-key-file: one clear line, before loading
    # resolve now: a wrong path is one clear line here, not a traceback inside the server
    path = resolve(settings.checkpoint) if settings.checkpoint else default_checkpoint()
    settings.checkpoint = str(path)
    serve(settings)
    return 0
