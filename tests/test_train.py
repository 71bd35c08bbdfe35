import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from tests.conftest import tiny_model, tiny_train
from textgen.data.dataset import StreamBatcher
from textgen.model import checkpoint
from textgen.model.checkpoint import load_model
from textgen.train.config import TrainConfig, lr_at
from textgen.train.runlog import read_metrics, truncate_metrics
from textgen.train.trainer import Trainer

TINY = [
    "--embed-dim",
    "8",
    "--hidden-size",
    "16",
    "--layers",
    "1",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
    "--warmup-steps",
    "2",
    "--threads",
    "1",
    "--no-progress",
]


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "textgen", *args],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 300),
        **kw,
    )


def test_batcher_streams_are_contiguous_and_resumable():
    tokens = np.arange(1000, dtype=np.uint16)
    b = StreamBatcher(tokens, batch_size=4, seq_len=10)
    x, y, _ = b.next()
    assert x.shape == (4, 10) and (y == x + 1).all()
    assert list(x[:, 0]) == [0, 250, 500, 750]
    x2, _, _ = b.next()
    assert (x2[:, 0] == x[:, -1] + 1).all()  # the next chunk continues each stream
    pos = b.position()
    x3, _, _ = b.next()
    b2 = StreamBatcher(tokens, 4, 10)
    b2.seek(pos)
    assert (b2.next()[0] == x3).all()
    ranks = [StreamBatcher(tokens, 2, 10, rank=r, world=2).next()[0][:, 0] for r in (0, 1)]
    assert list(ranks[0]) == [0, 250] and list(ranks[1]) == [500, 750]


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_config_errors_name_field_and_value():
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got -1"):
        TrainConfig(lr=-1)
    with pytest.raises(
        ValueError, match="precision must be one of auto, fp32, bf16, fp16, got 'fp8'"
    ):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown train settings: bogus"):
        TrainConfig.from_dict({"bogus": 1})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_loss_falls_on_real_text(tmp_path, prepared, cell):
    trainer = Trainer(
        prepared,
        tmp_path,
        tiny_model(prepared, cell=cell, softmax="adaptive"),
        tiny_train(max_steps=100, lr=1e-2, eval_every=50, batch_size=8),
    )
    result = trainer.run()
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert len(rows) == 100
    first, last = np.mean([r["loss"] for r in rows[:5]]), np.mean([r["loss"] for r in rows[-5:]])
    assert last < first - 0.8, (first, last)
    assert result["val_bpc"] < math.log2(len(trainer.corpus.vocab)) - 1
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert {"step", "loss", "grad_norm", "clipped"} <= set(rows[0])


def test_clipping_caps_the_norm(tmp_path, prepared):
    trainer = Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(clip=0.01))
    row = trainer.train_step()
    assert row["grad_norm"] > 0.01 and row["clipped"]
    total = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in trainer.model.parameters()])
    )
    assert float(total) <= 0.01 * 1.001
    off = Trainer(prepared, tmp_path / "off", tiny_model(prepared), tiny_train(clip=0))
    row = off.train_step()
    assert not row["clipped"] and row["grad_norm"] > 0.01


def test_nan_gradient_is_skipped_and_counted(tmp_path, prepared):
    trainer = Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(precision="fp32"))
    trainer.train_step()
    poison = {"on": True}
    trainer.model.embed.weight.register_hook(lambda g: g * float("nan") if poison["on"] else g)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    row = trainer.train_step()
    assert row["skipped"] and trainer.health.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    poison["on"] = False
    row = trainer.train_step()
    assert not row["skipped"] and trainer.health.skipped == 1 and trainer.health.bad_in_a_row == 0


def test_repeated_nan_stops_with_a_clear_message_and_saves_nothing_bad(tmp_path, prepared):
    trainer = Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_bad_steps=3))
    trainer.model.embed.weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(
        FloatingPointError, match="non-finite loss or gradients for 3 steps in a row"
    ):
        trainer.run()
    with torch.no_grad():
        trainer.model.embed.weight.fill_(float("nan"))
    assert trainer.save("last.pt") is None  # a non-finite model is never written
    assert not (tmp_path / "last.pt").exists()


def test_checkpoint_round_trip_identical_logits(tmp_path, prepared):
    trainer = Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_steps=10))
    trainer.run()
    raw = torch.load(tmp_path / "last.pt", weights_only=True)  # plain types and tensors only
    assert raw["step"] == 10 and raw["format"] == "textgen-checkpoint"
    assert raw["tokenizer"]["normalization"]["name"] == "textgen-zh-v1"
    model, vocab, _ = load_model(tmp_path / "last.pt")
    ids = torch.randint(0, len(vocab), (2, 12))
    trainer.model.eval()
    with torch.no_grad():
        want = trainer.model.log_probs(trainer.model(ids)[0])
        got = model.log_probs(model(ids)[0])
    assert torch.equal(want, got)
    assert checkpoint.resolve(tmp_path) == tmp_path / "best.pt"


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "textgen-checkpoint", "payload": Evil()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.load(path)


def test_truncate_metrics_drops_later_rows_and_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 8))
        + '{"step": 8, "lo'
    )
    truncate_metrics(path, 5)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5]


def _train_argv(data, out, *extra):
    """`python -m textgen train` on a tiny model; extra flags appended."""
    return [
        sys.executable,
        "-m",
        "textgen",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY,
        *extra,
    ]


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}


@pytest.mark.parametrize("cell", ["lstm", "gru"])  # the GRU trains through textgen.model.cpu_gru
def test_kill_9_and_resume_equals_uninterrupted(tmp_path, prepared, cell):
    common = [
        "train",
        "--data",
        str(prepared),
        *TINY,
        "--cell",
        cell,
        "--max-steps",
        "400",
        "--eval-every",
        "200",
        "--save-every",
        "25",
        "--seed",
        "3",
    ]
    full = _cli(*common, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "textgen", *common, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # kill somewhere between two saves, mid-run
        if (out / "metrics.jsonl").exists() and len(_losses(out)) >= 137:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(_losses(out))
    assert 137 <= killed_at < 400
    assert checkpoint.load(out / "last.pt")["step"] <= killed_at
    resumed = _cli(*common, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    want, got = _losses(tmp_path / "full"), _losses(out)
    assert sorted(got) == list(range(1, 401))
    assert got == want  # identical float losses, step for step


def test_sigterm_finishes_the_step_saves_and_exits_0(tmp_path, prepared):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_argv(prepared, out, "--max-steps", "100000", "--save-every", "100000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (out / "metrics.jsonl").exists() and len(_losses(out)) >= 5
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "signal SIGTERM" in stdout
    last_step = max(_losses(out))
    assert checkpoint.load(out / "last.pt")["step"] == last_step


def test_resume_refuses_another_model(tmp_path, prepared):
    Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_steps=10)).run()
    other = Trainer(prepared, tmp_path, tiny_model(prepared, hidden_size=24), tiny_train())
    with pytest.raises(ValueError, match="another model config"):
        other.resume()


def test_two_process_ddp_trains(tmp_path, prepared):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    argv = _train_argv(
        prepared, out, "--max-steps", "20", "--eval-every", "10", "--save-every", "10", "--json"
    )
    run = subprocess.run(
        [*torchrun, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["step"] == 20
    rows = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 21))  # one writer: rank 0
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_eval_and_baseline_cli(tmp_path, prepared):
    Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_steps=10)).run()
    run = _cli(
        "eval", "--checkpoint", str(tmp_path), "--data", str(prepared), "--split", "test", "--json"
    )
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert {"bpc", "perplexity", "unknown_rate", "tokens"} <= set(r) and r["bpc"] > 0
    text = tmp_path / "t.txt"
    text.write_text("中国人民在１９９８年迎来新年。龘\n", encoding="utf-8")
    run = _cli("eval", "--checkpoint", str(tmp_path / "last.pt"), "--text", str(text), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1])["unknown_rate"] > 0
    run = _cli("baseline", "--data", str(prepared), "--order", "3", "--json")
    assert run.returncode == 0, run.stderr
    b = json.loads(run.stdout.strip().splitlines()[-1])
    assert b["order"] == 3 and 3 < b["val_bpc"] < 12 and 3 < b["test_bpc"] < 12


def test_export_is_small_and_scores_like_the_original(tmp_path, prepared):
    from textgen.evaluation.evaluate import evaluate_checkpoint
    from textgen.model.checkpoint import export_inference

    Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_steps=20)).run()
    export_inference(tmp_path / "last.pt", tmp_path / "model.pt")
    exported = checkpoint.load(tmp_path / "model.pt")
    assert exported["kind"] == "inference" and "optimizer" not in exported
    assert all(
        v.dtype == torch.float16 for v in exported["model"].values() if v.is_floating_point()
    )
    assert (tmp_path / "model.pt").stat().st_size < 0.5 * (tmp_path / "last.pt").stat().st_size
    full = evaluate_checkpoint(tmp_path / "last.pt", prepared, "val")["bpc"]
    half = evaluate_checkpoint(tmp_path / "model.pt", prepared, "val")["bpc"]
    assert abs(full - half) < 0.01
