"""textgen.train.config: TrainConfig's validation and the learning-rate schedule."""

import pytest

from textgen.train.config import TrainConfig, lr_at


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
