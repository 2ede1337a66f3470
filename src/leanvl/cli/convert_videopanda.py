"""``leanvl convert videopanda IN_DIR OUT``: official Video-Panda checkpoint -> leanvl folder."""

from __future__ import annotations

from pathlib import Path

import typer

from leanvl.cli.app import convert_app


@convert_app.command("videopanda")
def convert_videopanda_command(
    in_dir: Path = typer.Argument(
        ..., help="Official HF checkpoint folder (config.json + shards)."
    ),
    out: Path = typer.Argument(..., help="leanvl checkpoint folder to write."),
    dtype: str = typer.Option("auto", help="auto (source dtype), float32, float16 or bfloat16."),
    stab_config: Path | None = typer.Option(
        None,
        help="STAB preprocessor_config.json (or its folder); default: the config's "
        "mm_video_tower folder next to the checkpoint, else the released geometry.",
    ),
    gstra_heads: int | None = typer.Option(
        None, help="GSTRA heads (default: official width table, 1024 -> 8)."
    ),
    lsd_heads: int = typer.Option(8, help="LSD window-attention heads."),
    fsra_heads: int = typer.Option(8, help="FSRA frame-summary heads."),
    num_frames: int | None = typer.Option(None, help="Frames per video (default 8)."),
    attn_implementation: str = typer.Option("sdpa", help="LLM attention: sdpa or eager."),
) -> None:
    """Convert an official Video-Panda checkpoint (safetensors or bin shards, no pickled code
    executed) into a leanvl checkpoint folder, strictly, and print what was dropped."""
    from leanvl.config import ConfigError
    from leanvl.convert.safe_load import CheckpointReadError, UnsafeCheckpointError
    from leanvl.convert.videopanda import ConversionError, convert_videopanda

    try:
        report = convert_videopanda(
            in_dir,
            out,
            dtype=dtype,
            stab_config=stab_config,
            gstra_heads=gstra_heads,
            lsd_heads=lsd_heads,
            fsra_heads=fsra_heads,
            num_frames=num_frames,
            attn_implementation=attn_implementation,
        )
    except (
        ConversionError,
        CheckpointReadError,
        UnsafeCheckpointError,
        ConfigError,
        OSError,
    ) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())
    typer.echo(f"wrote {out}")
