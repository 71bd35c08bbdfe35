"""`textgen generate` and `textgen serve`: parse arguments, call the engine or the server, print."""

from __future__ import annotations

import argparse
import json
import sys

from textgen.data.script import SCRIPTS

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

SERVE_EPILOG = """\
examples:
  textgen serve --checkpoint runs/lstm               # http://127.0.0.1:8000/ is the playground
  textgen serve --port 9000 --max-batch 32 --max-queue 128
  TEXTGEN_CHECKPOINT=runs/lstm TEXTGEN_CORS_ORIGINS=https://example.org textgen serve

  curl -s localhost:8000/v1/generate -H 'content-type: application/json' \
       -d '{"prompt": "中国", "max_new_tokens": 30, "seed": 1}'
  curl -sN localhost:8000/v1/generate -H 'content-type: application/json' \
       -d '{"prompt": "中国", "stream": true}'
  curl -s localhost:8000/v1/generate -H 'content-type: application/json' \
       -d '{"prompt": "春眠不覺曉", "max_new_tokens": 20, "script": "traditional"}'

every flag also reads TEXTGEN_<FLAG> from the environment (TEXTGEN_MAX_BATCH=1 turns batching
off); flags win. OpenAPI docs are at /docs, the schema at /openapi.json, metrics at /metrics.
"""


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="continue a prompt, streaming characters to the terminal",
        description=(
            "Continue a prompt with a trained checkpoint and stream the text as it is "
            "generated. The prompt is normalised the way the training corpus was; characters "
            "outside the vocabulary become <unk> (and are counted). A prompt or --stop in the "
            "other Chinese script than the model's (Traditional for the bundled Simplified "
            "model) is converted with OpenCC first. With no --checkpoint it uses "
            "$TEXTGEN_CHECKPOINT, else the bundled default model."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=GENERATE_EPILOG,
    )
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file or run folder")
    p.add_argument(
        "--max-new-tokens", type=int, default=200, help="at most this many characters (200)"
    )
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus probability mass (1 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="> 1 discourages characters seen in the last 64 (1 = off)")  # fmt: skip
    p.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop before this string; repeat for several (e.g. --stop 。)")  # fmt: skip
    p.add_argument("--seed", type=int, help="same seed, same text")
    p.add_argument("--n", type=int, default=1, help="independent samples (default 1)")
    p.add_argument("--script", choices=SCRIPTS, default="auto",
                   help="Chinese script of the output: auto (default) answers in the prompt's "
                        "script (the model's if the prompt shows neither); simplified (简体) or "
                        "traditional (繁體) convert the output with OpenCC")  # fmt: skip
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--json", action="store_true", help="print the result as one line of JSON")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from textgen.inference.generator import GenerationConfig, TextGenerator
    from textgen.inference.sampling import Chunk, Done

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=tuple(args.stop),
        seed=args.seed, n=args.n, script=args.script,
    )  # fmt: skip
    gen = TextGenerator.from_checkpoint(args.checkpoint, args.threads)
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
        from textgen.server.schemas import generate_response

        print(json.dumps(generate_response(result, gen.model_id), ensure_ascii=False))
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


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="HTTP API, OpenAI-compatible completions and a playground page",
        description=(
            "Serve a checkpoint over HTTP: POST /v1/generate (JSON or Server-Sent Events), "
            "POST /v1/completions and GET /v1/models (OpenAI-compatible), GET /health, "
            "GET /v1/model, GET /metrics (Prometheus) and a playground page at /. Requests "
            "in flight are continuously batched: one model step advances all of them."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SERVE_EPILOG,
    )
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file or run folder")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--max-batch", type=int, help="sequences per batched step (64; 1 = no batching)")
    p.add_argument("--max-queue", type=int, help="requests in flight before 429 (default 256)")
    p.add_argument("--max-prompt-chars", type=int, help="longest prompt accepted (default 2000)")
    p.add_argument("--max-new-tokens", type=int, help="largest max_new_tokens (default 1000)")
    p.add_argument("--max-n", type=int, help="most samples per request (default 8)")
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 65536)")
    p.add_argument("--cors-origins", help="comma-separated origins allowed by CORS (default none)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 0: all cores but one)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from textgen.server.app import create_app
    from textgen.server.settings import Settings

    names = ("checkpoint", "host", "port", "max_batch", "max_queue", "max_prompt_chars",
             "max_new_tokens", "max_n", "max_body_bytes", "cors_origins", "threads")  # fmt: skip
    settings = Settings.from_env(**{k: getattr(args, k) for k in names})
    from textgen.model.checkpoint import default_checkpoint, resolve

    # resolve now: a wrong path is one clear line here, not a traceback inside the server
    path = resolve(settings.checkpoint) if settings.checkpoint else default_checkpoint()
    settings.checkpoint = str(path)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                timeout_graceful_shutdown=int(settings.shutdown_timeout))  # fmt: skip
    return 0
