"""Timing statistics, peak memory and the matmul peak."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from leanvl.bench.matmul_peak import measure_matmul_peak
from leanvl.bench.timing import peak_memory, percentile, time_callable


def test_percentile_matches_numpy():
    values = [0.3, 0.1, 0.7, 0.2, 0.5, 0.9, 0.4]
    for q in (0, 10, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_time_callable_warms_up_then_times():
    calls = []
    timing = time_callable(lambda: calls.append(1), runs=4, warmup=2)
    assert len(calls) == 6
    assert timing.runs == 4 and len(timing.times_s) == 4
    assert timing.min_s <= timing.median_s <= timing.p90_s <= timing.max_s
    with pytest.raises(ValueError, match="runs=0"):
        time_callable(lambda: None, runs=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_peak_memory_sees_a_temporary_64_mib_tensor():
    def work():
        x = torch.ones(16 * 2**20)  # 64 MiB, freed on return
        return float(x[0])

    work()  # the freed memory of an earlier call must not hide the next one
    size, method = peak_memory(work)
    assert method == "rss_hwm"
    assert 60 * 2**20 <= size <= 90 * 2**20
    nothing, _ = peak_memory(lambda: None)
    assert nothing < 8 * 2**20


def test_matmul_peak_is_positive_and_consistent():
    peak = measure_matmul_peak(torch.float32, size=256, runs=3)
    assert peak.flops_per_s >= peak.median_flops_per_s > 0
    assert (peak.size, peak.dtype, peak.device) == (256, "float32", "cpu")
