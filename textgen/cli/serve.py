"""`textgen generate` and `textgen serve`: parse arguments, call the engine or the server, print."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

from textgen.cli.command import add_command
from textgen.data.script import SCRIPTS
from textgen.inference.limits import BOUNDS, MAX_STOP_CHARS, MAX_STOP_STRINGS, PARAMS, Param
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
  textgen generate --form 七言绝句 --acrostic 春夏秋冬 # a poem of that shape, heads 春夏秋冬
  textgen generate --prompt 今天 --regex '[0-9]{4}年[0-9]{1,2}月'   # the text matches it
  textgen generate --prompt 首都是 --choice 北京 --choice 上海 --logit-bias 的=-100
  textgen generate --prompts prompts.jsonl --output out.jsonl      # a file; a rerun resumes
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
    p.add_argument(
        "--prompt",
        help="text to continue (default with --form or --acrostic: a fresh text, no prompt)",
    )
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help='a file of prompts: one per line, or JSON lines {"prompt": ..., "seed": ...} '
        "with any sampling field; the results go to --output as JSON lines",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="with --prompts: the JSON lines file, written as each prompt finishes; a rerun "
        "skips the prompts it already holds",
    )
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file or run folder")
    for name, param in PARAMS.items():  # the one declaration: textgen.inference.limits
        p.add_argument(flag(name), **_param_flag(name, param))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="decode steps: auto (int8 where the CPU has an int8 engine, else bf16 where it "
        "pays, else fp32), or force one",
    )
    p.add_argument(
        "--max-batch", type=int, default=32, help="with --prompts: prompts generated at once"
    )
    p.add_argument("--json", action="store_true", help="print the result as one line of JSON")
    p.set_defaults(func=cmd_generate)


def _param_flag(name: str, param: Param) -> dict[str, Any]:
    """argparse keywords for one sampling parameter, from its declaration."""
    text = param.help.replace("%", "%%")
    if param.bound is not None:
        kind = int if param.bound.integer else float
        shown = "" if param.default is None else f" (default {param.default})"
        return {
            "type": checked(name, kind),
            "default": param.default,
            "help": f"{text}; {param.bound.describe()}{shown}",
        }
    if isinstance(param.default, bool):
        return {"action": "store_true", "help": text}
    if name == "stop":
        return {
            "action": "append",
            "default": [],
            "metavar": "TEXT",
            "help": f"{text}, at most {MAX_STOP_CHARS} chars; repeat for up to "
            f"{MAX_STOP_STRINGS} (e.g. --stop 。)",
        }
    if name == "choice":
        return {"action": "append", "metavar": "TEXT", "help": f"{text}; repeat for each"}
    if name == "logit_bias":
        return {
            "action": "append",
            "type": _bias_entry,
            "metavar": "TOKEN=BIAS",
            "help": f"{text}; repeat, e.g. --logit-bias 的=-100 --logit-bias 4=5 (digits: an id)",
        }
    if name == "script":
        return {"choices": SCRIPTS, "default": param.default, "help": text}
    return {"metavar": "TEXT", "help": text}


def _bias_entry(raw: str) -> tuple[str, float]:
    """``的=-5`` -> ("的", -5.0); the bound is checked with the config."""
    key, sep, value = raw.rpartition("=")
    try:
        if not sep or not key:
            raise ValueError
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"logit_bias entries are TOKEN=BIAS (a character or an id), got {raw!r}"
        ) from None


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

    values = vars(args).copy()
    if args.logit_bias:
        values["logit_bias"] = dict(args.logit_bias)
    config = GenerationConfig.from_fields(values)  # the flags use the config's names
    prompt = _prompt(args, config)
    gen = TextGenerator.from_checkpoint(args.checkpoint, args.threads, args.precision)
    if args.prompts:
        from textgen.inference.batchfile import run_prompts

        counts = run_prompts(gen, args.prompts, args.output, config, args.max_batch)
        print(
            f"{counts['done']} prompts generated, {counts['skipped']} already in "
            f"{args.output}, {counts['errors']} refused (error rows)",
            file=sys.stderr,
        )
        return 0
    result = _stream(gen, prompt, config)
    _report(result)
    if args.json:
        from textgen.server.responses import generate_response

        print(generate_response(result, gen.model_id).model_dump_json())
    return 0


def _prompt(args: argparse.Namespace, config: Any) -> str:
    """The prompt: --prompt; a fresh text (the paragraph mark) for a poem without one."""
    if args.prompts:
        if args.prompt or not args.output:
            raise ValueError("--prompts FILE needs --output FILE, and no --prompt")
        return ""
    if args.prompt:
        return args.prompt
    if config.form is not None or config.acrostic is not None:
        return "\n"  # start of a new text: the engine reads it as the paragraph mark
    raise ValueError("give --prompt TEXT (or --prompts FILE, or a --form)")


def _stream(gen: Any, prompt: str, config: Any) -> Any:
    """Print the text as it comes (a poem line by line) and return the result."""
    from textgen.inference.events import Chunk, Done

    poem = config.form is not None or config.acrostic is not None
    result = None
    for event in gen.stream(prompt, config):
        if isinstance(event, Chunk) and config.n == 1 and config.best_of is None:
            sys.stdout.write(event.text.replace("。", "。\n") if poem else event.text)
            sys.stdout.flush()
        elif isinstance(event, Done):
            result = event.result
    assert result is not None
    if config.n > 1 or config.best_of is not None:
        for s in result.samples:
            print(f"[{s.index}] {s.text}")
    elif not (poem and result.text.endswith("。")):
        print()
    return result


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
