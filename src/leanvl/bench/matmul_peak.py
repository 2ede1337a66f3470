"""This machine's measured matmul throughput: the physical limit beside every FLOP figure.

Square GEMMs large enough to be compute-bound (``n`` = 1024 and 2048 on CPU, 4096 and 8192 on
GPU) are run repeatedly after a warm-up; the best run over all sizes is the peak (closest to
what the hardware can do when nothing else interferes; which size wins depends on the caches),
the median at that size is recorded too. A model's FLOP lower bound per clip is
``FLOPs / peak`` seconds and its achieved fraction is ``(FLOPs / latency) / peak``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from leanvl.bench.timing import synchronize

__all__ = ["MatmulPeak", "measure_matmul_peak"]


@dataclass
class MatmulPeak:
    """Measured GEMM throughput.

    Attributes:
        flops_per_s: best run (FLOP/s).
        median_flops_per_s: median run.
        size: matrix side n of the ``n x n @ n x n`` products.
        dtype, device: what was measured.
        threads: ``torch.get_num_threads()`` at the time.
        runs: timed products.
    """

    flops_per_s: float
    median_flops_per_s: float
    size: int
    dtype: str
    device: str
    threads: int
    runs: int


def measure_matmul_peak(
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    size: int | None = None,
    runs: int = 7,
) -> MatmulPeak:
    """Best throughput of ``runs`` square matmuls per size (default sizes: see the module doc).

    Args:
        dtype: element type (matmul throughput depends on it).
        device: where to measure.
        size: one matrix side instead of the default sizes.
        runs: timed products per size, after two warm-up ones.
    """
    device = torch.device(device)
    sizes = [size] if size else [4096, 8192] if device.type == "cuda" else [1024, 2048]
    results = [_measure(dtype, device, n, runs) for n in sizes]
    return max(results, key=lambda r: r.flops_per_s)


def _measure(dtype: torch.dtype, device: torch.device, size: int, runs: int) -> MatmulPeak:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)

    for _ in range(2):
        torch.mm(a, b, out=out)
    synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        times.append(time.perf_counter() - start)
    flops = 2 * size**3
    times.sort()
    return MatmulPeak(
        flops_per_s=flops / times[0],
        median_flops_per_s=flops / times[len(times) // 2],
        size=size,
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        threads=torch.get_num_threads(),
        runs=runs,
    )
