"""textgen.model.checkpoint: round trip, export, the default checkpoint, and faults: a full disk
during a save, truncated and pickled files."""

import errno
import os

import pytest
import torch

import textgen
from textgen.model import checkpoint
from textgen.model.checkpoint import default_checkpoint, load_model
from textgen.train.trainer import Trainer


def test_checkpoint_round_trip_identical_logits(tmp_path, prepared, tiny_model, tiny_train):
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


def test_export_is_small_and_scores_like_the_original(tmp_path, prepared, tiny_model, tiny_train):
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


def test_default_checkpoint_order(ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CHECKPOINT", str(ckpt))
    assert default_checkpoint() == ckpt
    monkeypatch.delenv("TEXTGEN_CHECKPOINT")
    package = tmp_path / "src" / "textgen"
    monkeypatch.setattr(textgen, "__file__", str(package / "__init__.py"))
    with pytest.raises(FileNotFoundError, match="pass --checkpoint PATH"):
        default_checkpoint()
    repo_default = tmp_path / "src" / "checkpoints" / "default" / "model.pt"
    repo_default.parent.mkdir(parents=True)
    repo_default.write_bytes(b"x")
    assert default_checkpoint() == repo_default
    bundled = package / "default_model" / "model.pt"
    bundled.parent.mkdir(parents=True)
    bundled.write_bytes(b"x")
    assert default_checkpoint() == bundled


# ----------------------------------------------------------------- faults


def test_full_disk_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file, not mkstemp's 0600

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", no_space)
    with pytest.raises(
        OSError,
        match="could not save checkpoint .*last.pt .*the previous checkpoint there is intact",
    ):
        checkpoint.save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert checkpoint.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"step": 1, "w": torch.ones(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.load(path)


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
