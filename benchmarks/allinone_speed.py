"""Forward latency / throughput of All-in-one on CPU against this machine's fp32 matmul peak.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/allinone_speed.py [--models allinone_ti allinone_b]
        [--batches 1 8] [--frames 3] [--text-len 40] [--repeats 5]

For each model and batch size: median latency of a joint text+video forward (fp32,
``torch.inference_mode``, random weights, 224x224 frames, text with realistic padding), the
FLOPs of that forward counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per
multiply-add; attention matmuls included by counting on the math SDPA backend), the achieved
FLOP/s, and its ratio to the fp32 matmul FLOP/s measured in the same run (best of several GEMM
shapes, including the model's own).
The FLOP lower bound on latency is ``FLOPs / matmul FLOP/s``. Because the machine may be
shared, every timed forward is also compared with the GEMM rate measured right before and after
it ("% of matmul at the same time"), and FLOPs per CPU-second of this process are compared
with the GEMM's ("% of matmul per CPU-second": insensitive to time slices lost to other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import leanvl  # noqa: E402


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


GEMMS = {
    "2048x2048x2048": (2048, 2048, 2048),
    "5688x768x3072 (B fc1, batch 8)": (5688, 768, 3072),
    "5688x3072x768 (B fc2, batch 8)": (5688, 3072, 768),
}


def matmul_rate(shape: tuple[int, int, int], repeats: int) -> float:
    """fp32 GEMM FLOP/s of one (m, k, n) problem, median of ``repeats`` runs."""
    return gemm_rates(shape, repeats)[0]


def gemm_rates(shape: tuple[int, int, int], repeats: int) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second of this process) of one fp32 GEMM."""
    m, k, n = shape
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    with torch.inference_mode():
        torch.mm(a, b, out=out)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            torch.mm(a, b, out=out)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    flops = 2 * m * k * n
    return flops / statistics.median(wall), flops / statistics.median(cpu)


def bench_model(name: str, batch: int, frames: int, text_len: int, repeats: int) -> dict:
    """Latency and FLOPs of one joint forward of preset ``name``.

    Every timed forward is bracketed by two measurements of the fp32 GEMM rate (B's fc1
    shape), so that each forward is compared with the matmul throughput the machine delivered
    at that moment (the machine is shared; see the load printed with the results).
    """
    torch.manual_seed(0)
    model = leanvl.create_model(name, num_frames=frames, max_text_len=text_len).eval()
    video = torch.randn(batch, frames, 3, 224, 224)
    ids = torch.randint(1000, 30000, (batch, text_len))
    mask = torch.ones(batch, text_len, dtype=torch.long)
    for b in range(batch):  # captions of 12..text_len tokens, padded like the tokenizer does
        mask[b, 12 + (b * 7) % (text_len - 12) :] = 0
    gemm = GEMMS["5688x768x3072 (B fc1, batch 8)"]
    with torch.inference_mode():
        # Count with the math attention backend: its matmuls are visible to the counter
        # (the fused CPU kernel has no FLOP formula and would be counted as 0).
        counter = FlopCounterMode(display=False)
        with sdpa_kernel(SDPBackend.MATH), counter:
            model(video, ids, mask)
        flops = counter.get_total_flops()
        model(video, ids, mask)  # warm-up
        times, shares, cpu_shares = [], [], []
        for _ in range(repeats):
            before, before_cpu = gemm_rates(gemm, 3)
            start, start_cpu = time.perf_counter(), time.process_time()
            model(video, ids, mask)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            after, after_cpu = gemm_rates(gemm, 3)
            times.append(seconds)
            shares.append(flops / seconds / ((before + after) / 2))
            cpu_shares.append(flops / cpu_seconds / ((before_cpu + after_cpu) / 2))
    seconds = statistics.median(times)
    return {
        "model": name,
        "batch": batch,
        "frames": frames,
        "text_len": text_len,
        "gflops": flops / 1e9,
        "latency_s": seconds,
        "latency_min_s": min(times),
        "clips_per_s": batch / seconds,
        "achieved_gflops_per_s": flops / seconds / 1e9,
        "share_of_adjacent_matmul": statistics.median(shares),
        "share_of_matmul_per_cpu_second": statistics.median(cpu_shares),
    }


def main() -> None:
    """Run the benchmark and print a Markdown table plus a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["allinone_ti", "allinone_b"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--text-len", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rates = {name: matmul_rate(shape, args.repeats) for name, shape in GEMMS.items()}
    rows = [
        bench_model(m, b, args.frames, args.text_len, args.repeats)
        for m in args.models
        for b in args.batches
    ]
    for name, shape in GEMMS.items():  # re-measured after the models: the machine is shared
        rates[name] = max(rates[name], matmul_rate(shape, args.repeats))
    peak = max(rates.values())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}"
    )
    for name, rate in rates.items():
        print(f"fp32 matmul {name}: {rate / 1e9:.1f} GFLOP/s (best of the run)")
    print(f"fp32 matmul peak (best): {peak / 1e9:.1f} GFLOP/s\n")
    print(
        "| model | batch | GFLOPs | latency median (min) s | FLOP bound s | clips/s | "
        "achieved GFLOP/s | % of best matmul | % of matmul at the same time | "
        "% of matmul per CPU-second |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = r["gflops"] * 1e9 / peak
        share = 100 * r["achieved_gflops_per_s"] * 1e9 / peak
        print(
            f"| {r['model']} | {r['batch']} | {r['gflops']:.1f} | {r['latency_s']:.3f} "
            f"({r['latency_min_s']:.3f}) | {bound:.3f} | {r['clips_per_s']:.2f} | "
            f"{r['achieved_gflops_per_s']:.1f} | {share:.0f}% | "
            f"{100 * r['share_of_adjacent_matmul']:.0f}% | "
            f"{100 * r['share_of_matmul_per_cpu_second']:.0f}% |"
        )
    print(json.dumps({"matmul_peak_gflops_per_s": peak / 1e9, "rows": rows}))


if __name__ == "__main__":
    main()
