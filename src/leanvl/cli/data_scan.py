"""``leanvl data scan PATH``: find the videos of a dataset that do not decode.

The work is done by :mod:`leanvl.data.scan`; this module parses options, shows progress and
prints the summary. Exit codes: 0 every video decodes, 1 some do not (or the annotation file is
bad), 2 usage error (no such path, unknown format).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leanvl.cli.app import data_app


@data_app.command("scan")
def scan_command(
    path: Path = typer.Argument(..., help="An annotation file, a folder of videos, or a video."),
    fmt: str = typer.Option(
        None, "--format", "-f", help="Annotation format (default: detected from name/content)."
    ),
    video_root: Path = typer.Option(
        None, "--video-root", help="Folder the annotation's video paths are relative to."
    ),
    workers: int = typer.Option(2, "--workers", "-j", min=0, help="Worker processes (0: none)."),
    frames: int = typer.Option(4, "--frames", min=1, help="Middle frames decoded per video."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds allowed per video."),
    max_pixels: int = typer.Option(
        7680 * 4320,
        "--max-pixels",
        min=0,
        help="Largest frame (width*height) accepted, as data.max_video_pixels (0: no limit).",
    ),  # fmt: skip
    report: Path = typer.Option(
        None, "--report", help="Write a JSON report of the bad videos to this file."
    ),
) -> None:
    """Probe every video and decode a few frames; list the ones that fail."""
    from leanvl.data.annotations import AnnotationError
    from leanvl.data.datasets import VIDEO_EXTENSIONS
    from leanvl.data.scan import FORMATS, annotation_videos, folder_videos, scan_videos

    console, err = Console(), Console(stderr=True)
    if not path.exists():
        raise typer.BadParameter(f"'{path}' does not exist", param_hint="PATH")
    if fmt is not None and fmt not in FORMATS:
        raise typer.BadParameter(
            f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}", param_hint="--format"
        )
    if video_root is not None and not video_root.is_dir():
        raise typer.BadParameter(f"'{video_root}' is not a folder", param_hint="--video-root")
    if path.is_dir():
        videos = folder_videos(path)
    elif path.suffix.lower() in VIDEO_EXTENSIONS and fmt is None:
        videos = [path]
    else:
        try:
            videos = annotation_videos(path, fmt, video_root)
        except AnnotationError as error:
            err.print(f"[red]bad annotation file[/red] {error}")
            raise typer.Exit(1) from None
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--format") from None
    if not videos:
        err.print(f"no videos found under '{path}'")
        raise typer.Exit(1)

    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[bad]} bad"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("scan", total=len(videos), bad=0)
        bad_count = 0

        def on_result(_path: str, reason: str | None) -> None:
            nonlocal bad_count
            bad_count += reason is not None
            progress.update(task, advance=1, bad=bad_count)

        result = scan_videos(videos, workers=workers, num_frames=frames, timeout=timeout,
                             on_result=on_result, max_pixels=max_pixels or None)  # fmt: skip

    console.print(
        f"{result.total} videos scanned in {result.seconds:.1f} s: "
        f"[green]{len(result.ok)} ok[/green], [red]{len(result.bad)} bad[/red]"
    )
    if result.bad:
        table = Table("reason", "videos")
        for reason, count in result.by_reason().items():
            table.add_row(reason, str(count))
        console.print(table)
        for bad in sorted(result.bad, key=lambda b: b.path)[:20]:
            console.print(f"  {bad.path}: {bad.reason}", markup=False, highlight=False)
        if len(result.bad) > 20:
            console.print(f"  ... and {len(result.bad) - 20} more (see --report)")
    if report is not None:
        from leanvl.checkpoint import atomic_write_text

        payload = {"source": str(path), "frames": frames, **result.to_dict()}
        atomic_write_text(report, json.dumps(payload, indent=2) + "\n")
        console.print(f"report written to {report}", markup=False, highlight=False)
    raise typer.Exit(1 if result.bad else 0)
