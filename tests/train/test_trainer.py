"""textgen.train.trainer: the loss falls, clipping, non-finite steps skipped, counted and stopped."""

import math

import numpy as np
import pytest
import torch

from textgen.train.runlog import read_metrics
from textgen.train.trainer import Trainer


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_loss_falls_on_real_text(
    tmp_path, prepared, cell, tiny_model, tiny_train, check_png, tab10
):
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
    # plot_curves: 8 x 9 inches; the smoothed training loss in C0, validation in C1
    check_png(tmp_path / "curves.png", size=(8, 9), colors=[tab10(0), tab10(1)])
    assert {"step", "loss", "grad_norm", "clipped"} <= set(rows[0])


def test_clipping_caps_the_norm(tmp_path, prepared, tiny_model, tiny_train):
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


def test_nan_gradient_is_skipped_and_counted(tmp_path, prepared, tiny_model, tiny_train):
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


def test_repeated_nan_stops_with_a_clear_message_and_saves_nothing_bad(
    tmp_path, prepared, tiny_model, tiny_train
):
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
