"""``leanvl index`` and ``leanvl search``: text-to-video search over your own videos.

The work is done by :mod:`leanvl.tools.index`; this module parses options, shows a progress
bar and prints results. Exit codes: 0 ok (``index``: even when some files failed; they are
listed and recorded), 1 failure (bad model, index of another model, nothing to index), 2 usage
error.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leanvl.cli.app import app, fail


def _fail(console: Console, message: str) -> None:
    fail(console, message, 1)


@app.command("index")
def index_command(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="Folder of videos, or an annotation file (.json/.jsonl)."
    ),
    model: Path = typer.Option(..., "--model", help="leanvl checkpoint folder (e.g. DIR/model)."),
    out: Path = typer.Option(..., "--out", help="Index folder to create or update."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Clips per forward pass."),
    workers: int = typer.Option(2, "--workers", "-j", min=0, help="Decoding processes."),
    video_root: Path = typer.Option(
        None, "--video-root", help="Folder an annotation file's video paths are relative to."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Retry files that failed before even if unchanged."
    ),
    exact_max: int = typer.Option(
        50_000, "--exact-max", min=1, help="Largest collection searched exactly; IVF above."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
) -> None:
    """Embed every video of SOURCE with the model's contrastive video embedding.

    Resumable: files already indexed (same size and mtime) are skipped, changed ones are
    re-embedded, failures are recorded with their reason.
    """
    from leanvl.tools.index import build_index

    console = Console(stderr=True)
    columns = (
        TextColumn("indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("index", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = build_index(
                source,
                out,
                model,
                batch_size=batch_size,
                workers=workers,
                exact_max=exact_max,
                retry_failed=retry_failed,
                video_root=video_root,
                progress=progress,
            )
        except (FileNotFoundError, ValueError) as exc:
            _fail(console, str(exc))
    if as_json:
        print(json.dumps(report.to_dict(), indent=1))
        return
    if report.total == 0:
        console.print(f"[yellow]no video files found in '{source}'[/yellow]")
    out_console = Console()
    out_console.print(
        f"{report.total} files: {report.embedded} embedded, {report.skipped} unchanged, "
        f"{len(report.failed)} failed, {report.previously_failed} failed before (unchanged), "
        f"{report.removed} removed; {report.vectors} vectors ({report.kind}) in "
        f"{report.seconds:.1f} s -> '{out}'",
        highlight=False,
    )
    for path, reason in report.failed:
        out_console.print(f"  [red]failed[/red] {path}: {reason}", highlight=False)


@app.command("search")
def search_command(
    index: Path = typer.Argument(..., metavar="INDEX", help="Index folder (leanvl index --out)."),
    query: str = typer.Argument(..., metavar="QUERY", help="The sentence to search for."),
    k: int = typer.Option(10, "-k", "--top", min=1, help="Results to show."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    rerank: bool = typer.Option(
        False, "--rerank", help="Re-score the top k with the model's matching (ITM) head."
    ),
    model: Path = typer.Option(
        None, "--model", help="Checkpoint folder (default: the one the index was built with)."
    ),
) -> None:
    """Rank the indexed clips for QUERY (cosine similarity of contrastive embeddings)."""
    from leanvl.tools.index import VideoIndex, search

    console = Console(stderr=True)
    try:
        with VideoIndex.open(index) as idx:
            backend = idx.backend
            hits = search(idx, query, k, rerank=rerank, model=model)
    except (FileNotFoundError, ValueError) as exc:
        _fail(console, str(exc))
    if as_json:
        payload = {
            "query": query,
            "k": k,
            "rerank": rerank,
            "backend": backend,
            "results": [h.to_dict() for h in hits],
        }
        print(json.dumps(payload, indent=1))
        return
    if backend == "exact":
        console.print("note: exact search over the database (faiss missing or index out of date)")
    table = Table("rank", "score", *(["match"] if rerank else []), "duration")
    table.add_column("path", overflow="fold")  # paths are what users copy: never truncate
    for h in hits:
        match = [f"{h.match_score:.3f}" if h.match_score is not None else "-"] if rerank else []
        duration = f"{h.duration:.1f}s" if h.duration is not None else "?"
        table.add_row(str(h.rank), f"{h.score:.3f}", *match, duration, h.path)
    Console().print(table)
