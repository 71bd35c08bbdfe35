"""textgen.evaluation.health (and its figure): a run that stopped on non-finite steps."""

import math

import pytest

from textgen.evaluation import diagnose, plots
from textgen.evaluation import health as run_health_module
from textgen.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_health_of_a_run_that_stopped_on_non_finite_steps(
    tmp_path, prepared, tiny_model, tiny_train, strict_load, check_png, tab10
):
    trainer = Trainer(prepared, tmp_path, tiny_model(prepared), tiny_train(max_bad_steps=3))
    nan_from_step_5 = lambda g: g * float("nan") if trainer.step >= 4 else g  # noqa: E731
    trainer.model.embed.weight.register_hook(nan_from_step_5)
    with pytest.raises(FloatingPointError):
        trainer.run()
    health = run_health_module.training_health([tmp_path], labels=["poisoned"])
    run = health["runs"][0]
    assert run["label"] == "poisoned" and run["stopped_non_finite"]
    assert run["steps"] == 7 and run["skipped"] == 3 and sum(run["histogram"]["counts"]) == 4
    loss = run["series"]["loss_bpc"]
    assert math.isfinite(loss[0]) and math.isnan(loss[-1])
    assert run["series"]["skipped"][-1] == 1
    doc = strict_load(diagnose.write_json(health, tmp_path / "h.json"))
    assert doc["runs"][0]["series"]["loss_bpc"][-1] is None
    png = plots.plot_training_health(health, tmp_path / "h.png")
    check_png(png, size=(13, 8.5), colors=[tab10(0)])  # 13 x 8.5 inches; the run in C0
