"""Settings: TEXTGEN_* variables, `textgen serve` flags over them, errors naming the source."""

from __future__ import annotations

import shlex

import pytest

from textgen.cli import serve as cli_serve
from textgen.cli.main import build_parser
from textgen.server.settings import Settings, SettingsError


def _serve_settings(argv: list[str]) -> Settings:
    """The Settings `textgen serve ARGV` would run with (without serving)."""
    return cli_serve.serve_settings(build_parser().parse_args(["serve", *argv]))


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("TEXTGEN_MAX_BATCH", "1")
    monkeypatch.setenv("TEXTGEN_CORS_ORIGINS", "a.org, b.org")
    monkeypatch.setenv("TEXTGEN_PORT", "9")
    monkeypatch.setenv("TEXTGEN_SHUTDOWN_TIMEOUT", "")  # empty: the default
    s = Settings.from_env(port=8123)
    assert s.max_batch == 1 and s.cors_origins == ("a.org", "b.org") and s.port == 8123
    assert s.shutdown_timeout == 30.0


def test_every_setting_is_a_serve_flag_and_the_flag_beats_the_variable(monkeypatch):
    monkeypatch.setenv("TEXTGEN_MAX_QUEUE", "7")
    monkeypatch.setenv("TEXTGEN_CORS_ORIGINS", "https://a.org")
    assert _serve_settings([]).max_queue == 7
    s = _serve_settings(["--max-queue", "9", "--cors-origins", "https://b.org,https://c.org"])
    assert s.max_queue == 9 and s.cors_origins == ("https://b.org", "https://c.org")
    flags = set(vars(build_parser().parse_args(["serve"]))) - {"command", "verbose", "func"}
    assert flags == set(Settings.model_fields) - {"api_keys"}  # a secret: no flag, env only
    monkeypatch.setenv("TEXTGEN_METRICS_AUTH", "1")
    assert _serve_settings([]).metrics_auth is True
    assert _serve_settings(["--no-metrics-auth"]).metrics_auth is False


@pytest.mark.parametrize(
    ("env", "argv", "says"),
    [
        ({"TEXTGEN_MAX_QUEUE": "many"}, [], ["TEXTGEN_MAX_QUEUE", "'many'", "integer"]),
        ({"TEXTGEN_PORT": "70000"}, [], ["TEXTGEN_PORT", "70000", "65535"]),
        ({"TEXTGEN_MAX_BATCH": "5"}, ["--max-batch", "0"], ["--max-batch", "got 0"]),
        ({}, ["--threads", "-1"], ["--threads", "got -1"]),
        ({"TEXTGEN_LOG_LEVEL": "loud"}, [], ["TEXTGEN_LOG_LEVEL", "'loud'"]),
    ],
)
def test_bad_settings_name_the_variable_or_flag_and_the_value(monkeypatch, env, argv, says):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as e:
        _serve_settings(argv)
    for part in says:
        assert part in str(e.value)


def test_direct_construction_names_the_field():
    with pytest.raises(
        ValueError, match=r"max_batch \(--max-batch\): .*greater than or equal to 1, got 0"
    ):
        Settings(max_batch=0)
    with pytest.raises(ValueError, match="unknown_thing.*got 1"):
        Settings(unknown_thing=1)


@pytest.mark.parametrize("epilog", [cli_serve.SERVE_EPILOG, cli_serve.GENERATE_EPILOG])
def test_every_example_in_the_help_parses(epilog, monkeypatch):
    """The examples that `--help` shows are real command lines of today's parser."""
    parser = build_parser()
    commands = [ln.split("#")[0] for ln in epilog.replace("\\\n", " ").splitlines()]
    examples = [shlex.split(c) for c in commands if "textgen " in c]
    assert len(examples) >= 3
    for words in examples:
        env = [w for w in words[: words.index("textgen")] if "=" in w]
        args = parser.parse_args(words[words.index("textgen") + 1 :])
        if args.command == "serve":
            for assignment in env:
                monkeypatch.setenv(*assignment.split("=", 1))
            _serve_settings(words[words.index("textgen") + 2 :])


def test_api_keys_from_the_environment_and_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTGEN_API_KEYS", "k-one, k-two")
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# team keys\nk-three\n\n  k-four  # ci\n", encoding="utf-8")
    s = _serve_settings(["--api-key-file", str(keyfile)])
    assert s.keys() == ("k-one", "k-two", "k-three", "k-four")
    assert "k-one" not in repr(s) and "k-one" not in str(s)  # never shown, never logged


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read"), ("# only a comment\n\n", "no keys in")],
)
def test_a_bad_key_file_is_one_clear_error(tmp_path, content, says):
    keyfile = tmp_path / "keys.txt"
    if content is not None:
        keyfile.write_text(content, encoding="utf-8")
    with pytest.raises(SettingsError, match=says) as e:
        Settings(api_key_file=str(keyfile)).keys()
    assert str(keyfile) in str(e.value)


def test_a_bad_key_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("TEXTGEN_API_KEYS", "good,bad\x01secret")
    with pytest.raises(SettingsError, match="control characters") as e:
        Settings().keys()
    assert "secret" not in str(e.value)
