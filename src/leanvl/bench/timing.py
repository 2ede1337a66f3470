"""Latency and peak memory of a callable: warm-up, repeated timed runs, median and p90.

Latency is wall-clock time per call (``time.perf_counter``; on CUDA the device is synchronised
before the clock is read). CPU time (``time.process_time``, all threads) is recorded too: on a
shared machine it measures the work done and is far less distorted by other processes.

Peak memory:

* CUDA: ``torch.cuda.max_memory_allocated`` over one call, minus the memory allocated before it
  (tensors only, from the caching allocator's own accounting);
* CPU: the process's peak resident set size over one call (``VmHWM`` in
  ``/proc/self/status``, reset through ``/proc/self/clear_refs`` first), minus the resident size
  before the call. For the freed memory of earlier calls not to hide the call's own needs,
  glibc is told (``mallopt``) to serve every allocation of 64 KiB or more with its own mapping,
  returned to the system when freed, and ``malloc_trim`` releases the free heap first;
  afterwards the thresholds are set to what glibc's dynamic rule settles at for large tensors
  (mmap 32 MiB, trim 64 MiB), so later timings see the usual allocator behaviour. The figure
  is the extra memory the call made resident: activations, workspace, allocator slack
  (weights and inputs excluded). tracemalloc cannot see tensor memory and ``ru_maxrss``
  cannot be reset, so without ``/proc`` and glibc the field is None.
"""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["Timing", "peak_memory", "percentile", "synchronize", "time_callable"]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class Timing:
    """Seconds per call over ``runs`` timed calls (after ``warmup`` untimed ones).

    Attributes:
        median_s, p90_s, min_s, max_s: wall-clock statistics.
        cpu_median_s: median process CPU time per call (all threads).
        runs, warmup: calls timed and calls discarded.
        times_s: every timed wall-clock sample, in order.
    """

    median_s: float
    p90_s: float
    min_s: float
    max_s: float
    cpu_median_s: float
    runs: int
    warmup: int
    times_s: list[float]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of a non-empty list, ``q`` in [0, 100]."""
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU. Call before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(
    fn: Callable[[], object], device: torch.device | str = "cpu", runs: int = 5, warmup: int = 1
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed.

    Args:
        fn: the work (no arguments).
        device: where it runs (CUDA is synchronised around every call).
        runs: timed calls (>= 1).
        warmup: untimed calls first (allocator, thread pools, lazy init, autotuning).
    """
    if runs < 1:
        raise ValueError(f"time_callable: runs={runs}, expected >= 1")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return Timing(
        median_s=statistics.median(wall),
        p90_s=percentile(wall, 90),
        min_s=min(wall),
        max_s=max(wall),
        cpu_median_s=statistics.median(cpu),
        runs=runs,
        warmup=warmup,
        times_s=wall,
    )


def _status_kb(key: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def peak_memory(
    fn: Callable[[], object], device: torch.device | str = "cpu"
) -> tuple[int | None, str]:
    """Extra memory one call of ``fn`` needs at its peak, in bytes, and the method used.

    Returns:
        ``(bytes or None, method)`` with method ``"cuda_max_allocated"``, ``"rss_hwm"`` or
        ``"unavailable"``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before, "cuda_max_allocated"
    libc = _glibc()
    if libc is None:
        return None, "unavailable"
    libc.mallopt(_M_MMAP_THRESHOLD, _MEASURE_THRESHOLD)
    try:
        libc.malloc_trim(0)
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        before = _status_kb("VmRSS")
        fn()
        return max(_status_kb("VmHWM") - before, 0) * 1024, "rss_hwm"
    except (OSError, KeyError):
        return None, "unavailable"
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _SETTLED_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, 2 * _SETTLED_MMAP_THRESHOLD)


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MEASURE_THRESHOLD = 64 * 1024
_SETTLED_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX (64-bit)


def _glibc():
    """glibc through ctypes, or None (other C libraries, no /proc)."""
    if not (_STATUS.exists() and _CLEAR_REFS.exists()):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc-only symbols
    except (OSError, AttributeError):
        return None
    return libc
