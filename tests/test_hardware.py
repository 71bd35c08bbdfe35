"""textgen.hardware: `--precision auto` on CPU is measured, not read off the CPU's flags."""

import logging


def test_precision_auto_is_measured_not_read_off_the_flags(monkeypatch, caplog):
    import torch

    from textgen import hardware
    from textgen.train.runtime import resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    hardware.cpu_bf16_pays.cache_clear()
    assert resolve_precision("auto", cpu) == "fp32"  # no instructions: no measurement
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    hardware.cpu_bf16_pays.cache_clear()
    with caplog.at_level(logging.INFO, logger="textgen.hardware"):
        chosen = resolve_precision("auto", cpu)
    said = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith(f"-> {chosen}") and "bf16 GEMM took" in said[0]
    hardware.cpu_bf16_pays.cache_clear()
    assert resolve_precision("bf16", cpu) == "bf16"  # an explicit choice is not measured
