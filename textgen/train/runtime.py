"""Where and how a run computes: precision, data-parallel ranks (torchrun), stop signals,
the optimizer."""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from textgen.hardware import cpu_bf16_pays
from textgen.train.config import TrainConfig


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(
                "precision 'fp16' (AMP with loss scaling) needs a CUDA device; use bf16 on CPU"
            )
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_pays() else "fp32"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def shutdown_distributed(wait: bool = True) -> None:
    """Leave the process group before the interpreter exits.

    Exiting with the group still up lets gloo's worker threads outlive the interpreter; a
    rank that finishes first can then abort ("terminate called without an active
    exception", SIGABRT) and torchrun reports the whole run as failed. With ``wait`` a
    barrier keeps a rank from tearing down while another is still saving; after an error
    there is no wait (the other ranks may never arrive).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def agree(reason: str, world: int, device: torch.device) -> str:
    """All ranks stop together: any rank's reason stops every rank."""
    if world == 1:
        return reason
    import torch.distributed as dist

    flag = torch.tensor([1.0 if reason else 0.0], device=device)
    dist.all_reduce(flag)
    return reason or ("another rank stopped" if flag.item() > 0 else "")


def install_signal_handlers(on_signal: Callable[[str], None]) -> Callable[[], None]:
    """SIGTERM/SIGINT call ``on_signal(name)``; returns the function that restores the old
    handlers. Outside the main thread there is no signal handling (a no-op restore)."""

    def handler(signum, _frame):
        on_signal(signal.Signals(signum).name)

    try:
        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:
        return lambda: None

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HEAP_ALLOCATIONS_UP_TO = 1 << 30  # bytes: larger blocks still get their own mapping


@functools.cache
def keep_freed_memory() -> bool:
    """Let the C allocator reuse freed memory for large tensors instead of unmapping it.

    A training step allocates and frees the same large buffers every time (activations,
    logits and their gradients, tens of megabytes each). Above glibc's mmap threshold (at
    most 32 MiB by default) each one is a fresh mapping, so every step pays page faults and
    the kernel's zeroing of every page, which on CPU costs a sizeable share of a step
    (docs/benchmarks.md). Raising the threshold and the trim threshold keeps those pages in
    the process: the resident size stays at its peak instead of shrinking between steps.
    Once per process; False where the C library is not glibc (nothing changed).
    """
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(M_MMAP_THRESHOLD, HEAP_ALLOCATIONS_UP_TO) == 1
    return ok and mallopt(M_TRIM_THRESHOLD, 2 * HEAP_ALLOCATIONS_UP_TO) == 1


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (fused: one kernel over all parameters, about twice as fast on CPU), or plain SGD.

    Adam divides each step by the running gradient size, so a huge gradient does not make a
    huge step; plain SGD steps in proportion to the gradient, which is where clipping is what
    keeps an unstable run alive (see docs/gradients.md).
    """
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
    )
