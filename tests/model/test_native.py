"""textgen.model.native: building the C++ loops, falling back when that fails, the cache folder."""

from __future__ import annotations

import logging
import tempfile

import pytest
import torch

from textgen.model import cpu_gru, native


@pytest.mark.slow  # builds the C++ loops where they are not cached yet
def test_native_gru_loops_equal_the_python_loops() -> None:
    # the C++ loops against the Python ones at a size where oneDNN packs the weights, with
    # states large enough to saturate gates; float32 to float rounding, bf16 to its error
    if native.cpu_gru_ops() is None:
        pytest.skip("the C++ loops cannot be built here")
    torch.manual_seed(1)
    steps, batch, n_in, h = 9, 6, 40, 64
    weights = [
        torch.randn(3 * h, n_in) * 0.3,
        torch.randn(3 * h, h) * 0.3,
        torch.randn(3 * h),
        torch.randn(3 * h),
    ]
    for w in weights:
        w.requires_grad_()
    x = torch.randn(steps, batch, n_in, requires_grad=True)
    h0 = (torch.randn(batch, h) * 2).requires_grad_()
    g_out = torch.randn(steps, batch, h)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2e-2)):
        results = []
        for use_native in (False, True):
            out, last = cpu_gru.gru_layer(x, h0, weights, dtype, native=use_native)
            loss = (out * g_out).sum() + last.pow(2).sum()
            results.append([out, last, *torch.autograd.grad(loss, [x, h0, *weights])])
        for a, b in zip(*results, strict=True):
            assert ((b - a).norm() / a.norm()).item() < tol, dtype


@pytest.mark.slow  # runs the compiler
def test_native_build_failure_falls_back_with_the_compiler_error(
    tmp_path, monkeypatch, caplog, can_build
):
    if not can_build:
        pytest.skip("no C++ compiler or ninja")
    broken = tmp_path / "broken.cpp"
    broken.write_text("int f() { return undefined_name_here; }\n")
    monkeypatch.setattr(native, "SOURCES", [broken])
    monkeypatch.setenv("TEXTGEN_NATIVE_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="textgen.model.native"):
        assert native.load.__wrapped__() is False
    assert "undefined_name_here" in caplog.text and "Python loop" in caplog.text
    monkeypatch.setenv("TEXTGEN_NATIVE", "0")
    assert native.load.__wrapped__() is False  # switched off: not even tried


def test_native_cache_that_cannot_be_written_falls_back_to_the_temp_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should go")
    monkeypatch.setenv("TEXTGEN_NATIVE_CACHE", str(blocker / "cache"))
    wanted = native.build_dir()
    got = native._writable(wanted)
    assert got != wanted and got.name == wanted.name and got.is_dir()
    assert str(got).startswith(tempfile.gettempdir())
