"""A built wheel installs into a fresh virtual environment and trains with the C++ loops.

The wheel is built from this checkout and installed without its dependencies into a new
venv; the dependencies (torch, numpy, ...) come from the running interpreter's site-packages
through a .pth file, so the test needs no network. The editable install of the checkout is
not visible there (its import hook lives in a .pth file of the other venv, which a path entry
does not run), so what is imported is the wheel's copy: the test checks that it is.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_trains_with_the_cpp_loops(
    tmp_path, prepared, textgen_cli
):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("textgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("cpu_lstm.cpp", "cpu_gru.cpp", "rnn_common.h"):
        assert f"textgen/model/csrc/{part}" in names
    assert (
        "textgen/default_model/model.pt" in names or not (ROOT / "textgen/default_model").is_dir()
    )

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300
    )
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    env = {**os.environ, "TEXTGEN_NATIVE_CACHE": str(tmp_path / "native")}
    where = subprocess.run(
        [str(py), "-c", "import textgen; print(textgen.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert where.startswith(purelib), where  # the wheel's copy, not the checkout's

    out = tmp_path / "run"
    run = textgen_cli(
        "train",
        "--data",
        str(prepared),
        "--out",
        str(out),
        "--cell",
        "gru",
        "--layers",
        "1",
        "--hidden-size",
        "32",
        "--embed-dim",
        "16",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--threads",
        "1",
        "--precision",
        "fp32",
        "--no-progress",
        "--json",
        python=str(py),
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stderr
    assert "built textgen's CPU RNN kernels" in log, log[-3000:]
    assert "kernels are unavailable" not in log and "without textgen's C++ loops" not in log
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["step"] == 6 and result["val_bpc"] > 0
