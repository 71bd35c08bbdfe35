"""textgen's C++ CPU kernels (``textgen/csrc``), compiled on first use and cached.

Only GRU training on CPU uses them (textgen.cpu_gru). They are built with
``torch.utils.cpp_extension`` and the machine's C++ compiler the first time they are needed
(about 15 s on two cores), for this CPU (``-march=native``) and this torch, into
``$XDG_CACHE_HOME/textgen/native/<key>`` (``~/.cache`` by default; ``TEXTGEN_NATIVE_CACHE``
overrides the folder). Later runs load the cached library in well under a second.

Where they cannot be built (no compiler or ninja, e.g. the slim Docker image) or
``TEXTGEN_NATIVE=0`` is set, :func:`cpu_gru_ops` returns None, the reason is logged once, and
textgen.cpu_gru runs its loops in Python instead: same results, slower.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).parent / "csrc"
GRU_SOURCE = CSRC / "cpu_gru.cpp"
FLAGS = ["-O3", "-march=native", "-std=c++17"]


def _cpu_flags() -> str:
    """The CPU's feature flags: the build key, since -march=native code is CPU-specific."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def build_dir(source: Path = GRU_SOURCE) -> Path:
    """Where the library for this source, torch, CPU and flags is (or will be) built."""
    base = os.environ.get("TEXTGEN_NATIVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "textgen", "native"
    )
    key = "\n".join(
        [torch.__version__, platform.machine(), _cpu_flags(), " ".join(FLAGS), source.read_text()]
    )
    return Path(base) / hashlib.sha256(key.encode()).hexdigest()[:16]


def _reason(e: Exception) -> str:
    """The useful line of a build failure: the compiler's first error, else the last line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]  # file:line:col: error: ...
    return (errors or lines or [type(e).__name__])[0][:300]


@functools.cache
def cpu_gru_ops() -> Any | None:
    """``torch.ops.textgen_cpu_gru`` (forward, backward), built and loaded once; else None."""
    if os.environ.get("TEXTGEN_NATIVE", "1") == "0":
        log.info("TEXTGEN_NATIVE=0: GRU training on CPU uses the Python loop")
        return None
    try:
        from torch.utils import cpp_extension

        folder = build_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fresh = not any(folder.glob("*.so"))
        if fresh:
            log.info("building textgen's CPU GRU kernel into %s (once, ~15 s)", folder)
        t0 = time.monotonic()
        cpp_extension.load(
            name="textgen_cpu_gru",
            sources=[str(GRU_SOURCE)],
            extra_cflags=FLAGS,
            build_directory=str(folder),
            is_python_module=False,
            verbose=False,
        )
        if fresh:
            log.info("built textgen's CPU GRU kernel in %.1f s", time.monotonic() - t0)
        return torch.ops.textgen_cpu_gru
    except Exception as e:  # no compiler, no ninja, a read-only cache, a compile error
        reason = _reason(e)
        log.warning(
            "textgen's C++ GRU kernel is unavailable (%s); GRU training on CPU uses the "
            "slower Python loop. Install a C++ compiler and ninja to get it.",
            reason,
        )
        return None
