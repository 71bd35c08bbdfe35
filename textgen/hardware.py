"""What this machine offers: the CPU's feature flags, whether bf16 pays here, which device.

One place for the questions training (``--precision auto``), serving and the C++ build key
ask about the hardware.
"""

from __future__ import annotations

import functools
import logging
import platform
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@functools.cache
def cpu_flags() -> str:
    """The CPU's feature-flag line from /proc/cpuinfo (the processor name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def cpu_has_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX-512 BF16 or AMX)."""
    flags = cpu_flags().partition(":")[2].split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def gemm_seconds(dtype: torch.dtype, m: int = 4096, k: int = 512, n: int = 2048) -> float:
    """Seconds for four (m, k) x (k, n) GEMMs in ``dtype`` after one warm-up call."""
    x, w = torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)
    torch.nn.functional.linear(x, w)  # warm-up: oneDNN builds its kernel here
    t0 = time.perf_counter()
    for _ in range(4):
        torch.nn.functional.linear(x, w)
    return time.perf_counter() - t0


@functools.cache
def cpu_bf16_pays() -> bool:
    """True when bf16 GEMMs are clearly (>1.25x) faster than fp32 ones here; measured once.

    Having the instructions is not enough: on one of this project's 2-core machines with
    AVX-512 BF16 (and no AMX) bf16 GEMMs ran slower than fp32 ones, on another several times
    faster (README "Speed" has the figures). The shape is the training step's:
    (batch 32 x 128 steps, 512) x (512, 4 x 512).
    """
    if not cpu_has_bf16():
        return False
    fp32, bf16 = gemm_seconds(torch.float32), gemm_seconds(torch.bfloat16)
    pays = bf16 < 0.8 * fp32
    log.info(
        "precision auto: a bf16 GEMM took %.1f ms, fp32 %.1f ms -> %s",
        bf16 * 250,
        fp32 * 250,
        "bf16" if pays else "fp32",
    )
    return pays


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda[:N]``; a clear error without CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return torch.device(name)
