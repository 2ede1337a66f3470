"""``leanvl convert svitt IN OUT``: official SViTT checkpoint -> leanvl checkpoint folder.

The official ``.pth`` pickles an OmegaConf config next to the weights; it is read with the
restricted reader of :mod:`leanvl.convert.safe_load`, so no code from the file runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from leanvl.cli.app import convert_app
from leanvl.config import ConfigError, parse_overrides


@convert_app.command("svitt")
def convert_svitt(
    src: Path = typer.Argument(..., help="official SViTT checkpoint (.pth, {'model', 'config'})"),
    dst: Path = typer.Argument(..., help="leanvl checkpoint folder to write"),
    num_frames: int | None = typer.Option(
        None, "--num-frames", help="resample the position tables to this many frames"
    ),
    task: str | None = typer.Option(
        None, "--task", help="'vqa': build the VQA model from a pretraining checkpoint"
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="SViTTConfig field=value (e.g. text_heads=12); repeatable"
    ),
) -> None:
    """Convert an official SViTT checkpoint (pretraining, retrieval or VQA), load it strictly."""
    from leanvl.checkpoint import save_model
    from leanvl.convert.safe_load import CheckpointReadError, UnsafeCheckpointError, read_checkpoint
    from leanvl.convert.svitt import convert_svitt_checkpoint

    try:
        values = parse_overrides(overrides)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: --set: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        checkpoint = read_checkpoint(src)
    except (UnsafeCheckpointError, CheckpointReadError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)  # these name the file themselves
        raise typer.Exit(1) from exc
    try:
        model, conversion = convert_svitt_checkpoint(checkpoint, num_frames, values, task)
    except ConfigError as exc:
        typer.echo(f"error: --set / checkpoint config: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (ValueError, KeyError) as exc:
        typer.echo(f"error: '{src}': {exc}", err=True)
        raise typer.Exit(1) from exc
    save_model(model, dst, extra={"conversion": conversion.report()})
    reasons = Counter(conversion.dropped.values())
    typer.echo(f"converted '{src}' -> '{dst}' ({len(conversion.state_dict)} tensors)")
    for reason, count in sorted(reasons.items()):
        typer.echo(f"  dropped {count} keys: {reason}")
    if conversion.resampled:
        old, new = conversion.resampled
        typer.echo(f"  resampled position tables: {old} -> {new} frames")
    for note in conversion.notes:
        typer.echo(f"  {note}")
