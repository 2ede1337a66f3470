"""``leanvl data synth OUT``: generate the built-in synthetic temporal benchmark.

The work is done by :func:`leanvl.data.synth.generate`; this module parses options, shows a
progress bar and prints a summary. Exit codes: 0 written (or already up to date), 1 ``OUT``
exists with other contents (use ``--force``), 2 usage error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leanvl.cli.app import data_app

DEMO_SPLITS = {"train": 2000, "val": 200, "test": 200}


def parse_splits(text: str) -> dict[str, int]:
    """``"train=2000,val=200,test=200"`` → counts; splits not named get 0 clips.

    Raises:
        typer.BadParameter: unknown split, repeated split, or a count that is not an int >= 0.
    """
    counts = dict.fromkeys(DEMO_SPLITS, 0)
    seen: set[str] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in counts:
            raise typer.BadParameter(
                f"expected NAME=COUNT with NAME in train/val/test, got {item!r}",
                param_hint="--splits",
            )
        if name in seen:
            raise typer.BadParameter(f"split {name!r} given twice", param_hint="--splits")
        if not value.strip().isdigit():
            raise typer.BadParameter(
                f"count of {name!r} must be an integer >= 0, got {value!r}", param_hint="--splits"
            )
        seen.add(name)
        counts[name] = int(value)
    if not seen:
        raise typer.BadParameter("no split given", param_hint="--splits")
    return counts


def clips_to_splits(total: int) -> dict[str, int]:
    """Split ``total`` clips like the demo (10:1:1), with at least 5 val and 5 test clips."""
    if total < 15:
        raise typer.BadParameter(f"need at least 15 clips, got {total}", param_hint="--clips")
    held = max(5, round(total / 12))
    return {"train": total - 2 * held, "val": held, "test": held}


@data_app.command("synth")
def synth_command(
    out: Path = typer.Argument(..., metavar="OUT", help="Dataset folder to create."),
    clips: int = typer.Option(
        None, "--clips", min=1, help="Total clips, split 10:1:1 train/val/test (default 2400)."
    ),
    frames: int = typer.Option(16, "--frames", min=4, help="Frames per clip."),
    size: int = typer.Option(112, "--size", min=32, help="Frame side in pixels (even)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same arguments, same dataset)."),
    splits: str = typer.Option(
        None, "--splits", help="Clips per split, e.g. train=2000,val=200,test=200."
    ),
    ego: bool = typer.Option(False, "--ego", help="Also write EgoClip csv + EgoMCQ json."),
    ego_videos: int = typer.Option(
        40, "--ego-videos", min=1, help="Ego videos for EgoClip (EgoMCQ gets a quarter more, >= 5)."
    ),
    preview: int = typer.Option(0, "--preview", min=0, help="Write preview.png of N clips."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Processes (0: all cores)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it holds something else."),
) -> None:
    """Generate the synthetic temporal video-language benchmark (mp4 + annotations)."""
    from leanvl.data.synth import SynthConfig, generate, is_generated

    if clips is not None and splits is not None:
        raise typer.BadParameter("give --clips or --splits, not both", param_hint="--splits")
    counts = (
        parse_splits(splits)
        if splits is not None
        else clips_to_splits(clips)
        if clips is not None
        else dict(DEMO_SPLITS)
    )
    try:
        config = SynthConfig(
            **counts, frames=frames, size=size, seed=seed, ego=ego, ego_videos=ego_videos,
            ego_mcq_videos=max(5, ego_videos // 4), preview=preview, workers=workers,
        )  # fmt: skip
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None

    console, err = Console(), Console(stderr=True)
    up_to_date = is_generated(out, config) and not force
    start = time.perf_counter()
    with Progress(
        TextColumn("rendering + encoding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("synth", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            root = generate(out, config, overwrite=force, progress=on_progress)
        except FileExistsError as error:
            err.print(f"[red]error[/red] {error}")
            raise typer.Exit(1) from None
    seconds = time.perf_counter() - start
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    table = Table("split", "clips", "captions", "static QA", "temporal QA")
    c = meta["counts"]
    for split in ("train", "val", "test"):
        qa = c["qa"][split]
        table.add_row(
            split, str(c["clips"][split]), str(c["captions"][split]),
            str(qa.get("static", 0)), str(qa.get("temporal", 0)),
        )  # fmt: skip
    console.print(table)
    console.print(f"multiple choice (test): {c['mc_test']}")
    if "ego" in c:
        console.print(f"ego: {c['ego']['egoclip_rows']} EgoClip rows, EgoMCQ {c['ego']['egomcq']}")
    if preview:
        console.print(f"preview: {root / 'preview.png'}")
    if up_to_date:
        console.print(f"{root} is up to date (same generator version and parameters)")
    else:
        console.print(f"wrote {root} in {seconds:.1f} s")
