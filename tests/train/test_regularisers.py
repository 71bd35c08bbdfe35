"""The #16 levers: weight averaging (textgen.train.averaging), AWD-LSTM regularisers as flags,
and exact resume with all of them on."""

import json

import pytest
import torch
from torch import nn

from textgen.model import checkpoint
from textgen.train.averaging import WeightAverage, averaged
from textgen.train.config import TrainConfig
from textgen.train.trainer import Trainer


def test_update_follows_the_ramped_decay():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    avg = WeightAverage(model, decay=0.99)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    avg.update()  # n=1: d = min(0.99, 2/11)
    d = 2 / 11
    torch.testing.assert_close(avg.avg[0], d * start + (1 - d) * (start + 1.0))
    for _ in range(2000):
        avg.update()
    # long after the ramp the decay is the requested one
    assert min(0.99, (1 + avg.updates) / (10 + avg.updates)) == 0.99
    torch.testing.assert_close(avg.avg[0], model.weight.detach(), atol=1e-6, rtol=0)


def test_swapped_in_restores_the_raw_weights_even_after_an_error():
    model = nn.Linear(2, 2)
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        avg.avg[0].fill_(7.0)
    raw = model.weight.detach().clone()
    with pytest.raises(RuntimeError), averaged(avg):
        assert torch.all(model.weight == 7.0)
        raise RuntimeError("boom")
    assert torch.equal(model.weight, raw)
    with averaged(None):  # no averaging: nothing swapped
        assert torch.equal(model.weight, raw)


def test_ema_out_of_range_is_refused():
    with pytest.raises(ValueError, match="ema must be in"):
        TrainConfig(ema=1.0)


LEVERS = {
    "dropout": 0.2, "input_dropout": 0.1, "dropout_mask": "locked", "embed_dropout": 0.1,
    "weight_drop": 0.3,
}  # fmt: skip


def test_checkpoint_carries_the_average_and_inference_uses_it(
    tmp_path, prepared, tiny_model, tiny_train
):
    Trainer(prepared, tmp_path, tiny_model(prepared, **LEVERS), tiny_train(ema=0.9)).run()
    ckpt = checkpoint.load(tmp_path / "last.pt")
    assert ckpt["averaged_updates"] == 30
    raw, avg = ckpt["model"], ckpt["averaged_model"]
    assert set(raw) == set(avg)
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)
    model, _, _ = checkpoint.load_model(tmp_path / "last.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, avg[k]), k
    exported = checkpoint.export_inference(tmp_path / "last.pt", tmp_path / "m.pt", half=False)
    assert "averaged_model" not in exported
    for k, v in exported["model"].items():
        assert torch.equal(v, avg[k]), k


class _StopsAtStep10(Trainer):
    """A run cut off after step 10 (as by a signal), its schedule still that of 20 steps."""

    def _check_stop(self) -> None:
        super()._check_stop()
        if self.step == 10:
            self.stop_reason = "cut off for the test"


def test_resume_with_every_lever_on_equals_uninterrupted(
    tmp_path, prepared, tiny_model, tiny_train
):
    model, train = tiny_model(prepared, **LEVERS), tiny_train(max_steps=20, ema=0.9)
    Trainer(prepared, tmp_path / "full", model, train).run()
    _StopsAtStep10(prepared, tmp_path / "cut", model, train).run()
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 10
    second = Trainer(prepared, tmp_path / "cut", model, train)
    assert second.resume()
    second.run()
    a = checkpoint.load(tmp_path / "full" / "last.pt")
    b = checkpoint.load(tmp_path / "cut" / "last.pt")
    assert a["step"] == b["step"] == 20
    for part in ("model", "averaged_model"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["averaged_updates"] == b["averaged_updates"] == 20


def test_regularisers_and_averaging_are_flags_recorded_in_the_run(
    tmp_path, prepared, tiny_flags, textgen_cli
):
    help_text = textgen_cli("train", "--help").stdout
    for flag in ("--dropout-mask", "--input-dropout", "--embed-dropout", "--weight-drop", "--ema"):
        assert flag in help_text
    out = tmp_path / "run"
    levers = ["--dropout-mask", "locked", "--embed-dropout", "0.1", "--weight-drop", "0.3"]
    levers += ["--input-dropout", "0.05"]
    r = textgen_cli(
        "train", "--data", str(prepared), "--out", str(out), *tiny_flags, *levers,
        "--ema", "0.99", "--max-steps", "3",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["dropout_mask"] == "locked"
    assert config["model"]["embed_dropout"] == 0.1 and config["model"]["weight_drop"] == 0.3
    assert config["model"]["input_dropout"] == 0.05
    assert config["train"]["ema"] == 0.99
    bad = textgen_cli("train", "--data", str(prepared), "--out", str(out), "--weight-drop", "1.5")
    assert bad.returncode != 0 and "weight_drop must be in [0, 1), got 1.5" in bad.stderr
