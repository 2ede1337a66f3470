"""``leanvl bench model``: one JSON record per (variant, frames, batch) point of a preset.

Each point: build the workload, count FLOPs on the first (warm-up) call, time ``runs`` further
calls (median, p90), measure the peak memory of one more call, and set the figures beside the
machine's measured matmul peak. Record keys (documented in docs/benchmarks.md):

``model, family, variant, frames, batch, mode, device, dtype, params, flops, tokens, latency_s,
throughput_clips_per_s, peak_memory_bytes, peak_memory_method, limit`` and, for Video-Panda,
``analytic``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from leanvl.bench.flops import FlopCount, count_flops
from leanvl.bench.matmul_peak import MatmulPeak, measure_matmul_peak
from leanvl.bench.params import count_parameters
from leanvl.bench.timing import peak_memory, time_callable
from leanvl.bench.workloads import Workload, build_workload, config_summary

__all__ = [
    "DTYPES",
    "bench_point",
    "environment",
    "parse_dtype",
    "run_model_bench",
    "set_limit",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(name: str) -> torch.dtype:
    """``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``."""
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    key = aliases.get(name, name)
    if key not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {sorted(DTYPES) + sorted(aliases)}")
    return DTYPES[key]


def environment() -> dict[str, Any]:
    """Machine, library versions, thread count, load average and date, for the record."""
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = names[0] if names else cpu
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        from importlib.metadata import version

        versions["leanvl"] = version("leanvl")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        versions["leanvl"] = "source"
    env = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "versions": versions,
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def _train_step(workload: Workload) -> Callable[[], Any]:
    """Forward + backward of a scalar made of every floating output (train mode)."""
    model = workload.model

    def floats(obj) -> list[torch.Tensor]:
        if isinstance(obj, torch.Tensor):
            return [obj] if obj.is_floating_point() and obj.requires_grad else []
        if isinstance(obj, dict):
            obj = list(obj.values())
        if hasattr(obj, "__dataclass_fields__"):
            obj = [getattr(obj, f) for f in obj.__dataclass_fields__]
        if isinstance(obj, list | tuple):
            return [t for item in obj for t in floats(item)]
        return []

    def step():
        model.zero_grad(set_to_none=True)
        out = workload.forward()
        loss = sum(t.float().mean() for t in floats(out))
        loss.backward()
        return out

    return step


def _flops_record(count: FlopCount, batch: int, mode: str) -> dict[str, Any]:
    attention_by_component: dict[str, int] = {}
    for call in count.attention_calls:
        total = attention_by_component.get(call.component, 0)
        attention_by_component[call.component] = total + call.flops
    record: dict[str, Any] = {
        "per_clip": count.total / batch,
        "total": count.total,
        "by_category": count.by_category,
        "by_component": count.by_component,
        "attention_calls": len(count.attention_calls),
        "attention_by_component": attention_by_component,
        "flopcounter_matmul": count.torch_matmul,
        "flopcounter_total": count.torch_total,
        "ours_matmul": count.non_attention,
        "crosscheck_rel_diff": count.crosscheck,
        "counted": "forward",
    }
    if mode == "train":
        record["train_per_clip_analytic"] = 3 * count.total / batch
        record["train_note"] = "forward counted; backward taken as 2x forward"
    return record


def set_limit(record: dict[str, Any], peak: float) -> None:
    """Set a timed record's ``limit`` fields against a matmul peak of ``peak`` FLOP/s."""
    flops = record["flops"]["train_per_clip_analytic" if record["mode"] == "train" else "per_clip"]
    achieved = flops / (record["latency_s"]["median"] / record["batch"])
    record["limit"] = {
        "matmul_peak_flops_per_s": peak,
        "lower_bound_s_per_clip": flops / peak,
        "achieved_flops_per_s": achieved,
        "achieved_fraction": achieved / peak,
    }


def bench_point(
    workload: Workload,
    mode: str = "infer",
    runs: int = 3,
    warmup: int = 1,
    peak: MatmulPeak | None = None,
    timing: bool = True,
    heavy_flops: float | None = None,
) -> dict[str, Any]:
    """Measure one built workload; returns the JSON record (see the module doc).

    Args:
        workload: from :func:`~leanvl.bench.workloads.build_workload`.
        mode: ``"infer"`` (eval, no grad) or ``"train"`` (train mode, forward + backward).
        runs: timed calls.
        warmup: untimed calls; the first one is the FLOP-counted call.
        peak: the matmul peak to compare with (None: no ``limit`` figures).
        timing: False counts FLOPs and tokens only (one call).
        heavy_flops: time a single call when the counted forward exceeds this many FLOPs
            per clip (full-size models at 16 frames take tens of seconds on a CPU).
    """
    if mode not in ("infer", "train"):
        raise ValueError(f"mode {mode!r}: expected 'infer' or 'train'")
    model, batch = workload.model, workload.batch
    device = next(model.parameters()).device
    model.train(mode == "train")
    step = _train_step(workload) if mode == "train" else workload.forward
    params = count_parameters(model, workload.component_of)
    grad = torch.enable_grad() if mode == "train" else torch.no_grad()
    with grad:
        count, out = count_flops(
            workload.forward,
            workload.model,
            workload.component_of,
            crosscheck=not workload.uses_flex,
        )
        record: dict[str, Any] = {
            "model": workload.name,
            "family": workload.family,
            "variant": workload.variant,
            "frames": workload.frames,
            "batch": batch,
            "mode": mode,
            "device": str(device),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "params": {"total": params.total, "by_component": params.by_component},
            "flops": _flops_record(count, batch, mode),
            "tokens": workload.tokens(out),
        }
        if workload.analytic is not None:
            record["analytic"] = workload.analytic(out)
        del out
        if not timing:
            return record
        if heavy_flops is not None and count.total / batch > heavy_flops:
            runs = 1
        # The counted call warmed up the forward; a train step still needs its own warm-up.
        untimed = max(warmup - 1, 0) if mode == "infer" else max(warmup, 1)
        times = time_callable(step, device, runs=runs, warmup=untimed)
        memory, method = peak_memory(step, device)
    record["latency_s"] = {
        "median": times.median_s,
        "p90": times.p90_s,
        "min": times.min_s,
        "max": times.max_s,
        "cpu_median": times.cpu_median_s,
        "runs": times.runs,
        "warmup": warmup,
    }
    record["throughput_clips_per_s"] = batch / times.median_s
    record["peak_memory_bytes"] = memory
    record["peak_memory_method"] = method
    if peak is not None:
        set_limit(record, peak.flops_per_s)
    return record


def run_model_bench(
    name: str,
    frames: list[int],
    batches: list[int],
    mode: str = "infer",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    variants: list[str] | None = None,
    runs: int = 3,
    warmup: int = 1,
    timing: bool = True,
    peak: MatmulPeak | None = None,
    heavy_flops: float | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Benchmark preset ``name`` at every (variant, frames, batch) point.

    Returns:
        ``{"environment", "matmul_peak", "config", "results": [record, ...]}``; with
        ``timing=False`` no matmul peak is measured.
    """
    if timing and peak is None:
        peak = measure_matmul_peak(dtype, device)
    results, config = [], {}
    for variant in variants or ["default"]:
        for t in frames:
            model = None
            for b in batches:
                workload = build_workload(name, t, b, variant, device, dtype, model=model)
                model = workload.model
                config.setdefault(variant, config_summary(model))
                record = bench_point(workload, mode, runs, warmup, peak, timing, heavy_flops)
                results.append(record)
                if on_record is not None:
                    on_record(record)
            del model
    return {
        "environment": environment(),
        "matmul_peak": asdict(peak) if peak is not None else None,
        "config": config,
        "results": results,
    }
