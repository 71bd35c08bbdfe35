"""textgen's C++ CPU kernels (``textgen/model/csrc``), compiled on first use and cached.

GRU and LSTM training on CPU use them (textgen.model.cpu_gru, textgen.model.cpu_lstm). They are built with
``torch.utils.cpp_extension`` and the machine's C++ compiler the first time they are needed
(once per machine and torch version), for this CPU (``-march=native``) and this torch, into
``$XDG_CACHE_HOME/textgen/native/<key>`` (``~/.cache`` by default; ``TEXTGEN_NATIVE_CACHE``
overrides the folder; where it cannot be written, the temp dir). Later runs load the cached
library in well under a second.

Where they cannot be built (no compiler or ninja, e.g. the slim Docker image) or
``TEXTGEN_NATIVE=0`` is set, :func:`cpu_gru_ops` and :func:`cpu_lstm_ops` return None and the
reason is logged once: textgen.model.cpu_gru then runs its loops in Python, and an LSTM trains
through nn.LSTM's own kernel. Same results, slower.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from textgen.hardware import cpu_flags

log = logging.getLogger(__name__)

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "cpu_gru.cpp", CSRC / "cpu_lstm.cpp"]  # one library, two op namespaces
HEADERS = [CSRC / "rnn_common.h"]
# 512-bit vectors where the CPU has them: the gate loops are compute-bound, and GCC otherwise
# prefers 256-bit ones even on AVX-512 machines
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-std=c++17"]


def build_dir() -> Path:
    """Where the library for these sources, torch, CPU and flags is (or will be) built."""
    base = os.environ.get("TEXTGEN_NATIVE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "textgen", "native"
    )
    key = "\n".join(
        [torch.__version__, platform.machine(), cpu_flags(), " ".join(FLAGS)]
        + [f.read_text() for f in [*SOURCES, *HEADERS]]
    )
    return Path(base) / hashlib.sha256(key.encode()).hexdigest()[:16]


def _writable(folder: Path) -> Path:
    """`folder`, created; or the same key under the temp dir where the cache is read-only."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"textgen-native-{os.getuid()}" / folder.name
    log.info("%s is not writable: building in %s", folder, fallback)
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _reason(e: Exception) -> str:
    """The useful line of a build failure: the compiler's first error, else the last line."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]  # file:line:col: error: ...
    return (errors or lines or [type(e).__name__])[0][:300]


def cpu_gru_ops() -> Any | None:
    """``torch.ops.textgen_cpu_gru`` (forward, backward) once built and loaded; else None."""
    return torch.ops.textgen_cpu_gru if load() else None


def cpu_lstm_ops() -> Any | None:
    """``torch.ops.textgen_cpu_lstm`` (forward, backward) once built and loaded; else None."""
    return torch.ops.textgen_cpu_lstm if load() else None


def built(ops: Any | None, name: str) -> Any:
    """``ops`` where the library is loaded; a clear error where a caller skipped the check."""
    if ops is None:
        raise RuntimeError(f"textgen's C++ {name} loops are not built here (see the log)")
    return ops


@functools.cache
def load() -> bool:
    """Build (first time) and load the kernels' library; False, with the reason logged, if not."""
    if os.environ.get("TEXTGEN_NATIVE", "1") == "0":
        log.info("TEXTGEN_NATIVE=0: RNN training on CPU without textgen's C++ loops")
        return False
    try:
        from torch.utils import cpp_extension

        folder = _writable(build_dir())
        fresh = not any(folder.glob("*.so"))
        if fresh:
            log.info("building textgen's CPU RNN kernels into %s (once, under a minute)", folder)
        t0 = time.monotonic()
        cpp_extension.load(
            name="textgen_cpu_rnn",
            sources=[str(f) for f in SOURCES],
            extra_cflags=FLAGS,
            build_directory=str(folder),
            is_python_module=False,
            verbose=False,
        )
        if fresh:
            log.info("built textgen's CPU RNN kernels in %.1f s", time.monotonic() - t0)
        return True
    except Exception as e:  # no compiler, no ninja, a read-only cache, a compile error
        reason = _reason(e)
        log.warning(
            "textgen's C++ RNN kernels are unavailable (%s); GRU training on CPU uses the "
            "slower Python loop, LSTM training nn.LSTM's kernel. Install a C++ compiler and "
            "ninja to get them.",
            reason,
        )
        return False


def pack(w: torch.Tensor, batch: int) -> torch.Tensor | None:
    """w (N, K) in oneDNN's blocked layout for GEMMs of `batch` rows, or None where unsupported.

    oneDNN otherwise reorders the weight on every call: at batch 32 a third of a recurrent
    GEMM's time (bf16, 2x512: ~158 vs ~240 us per call).
    """
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(w, batch)
    except (RuntimeError, AttributeError):
        return None
