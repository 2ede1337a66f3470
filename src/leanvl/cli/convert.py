"""``leanvl convert allinone IN OUT``: official All-in-one checkpoint -> leanvl folder."""

from __future__ import annotations

from pathlib import Path

import typer

from leanvl.cli.app import convert_app


@convert_app.command("allinone")
def convert_allinone_command(
    in_path: Path = typer.Argument(..., help="Official .ckpt (Lightning 1.1.4) or state dict."),
    out_dir: Path = typer.Argument(..., help="leanvl checkpoint folder to write."),
    num_frames: int = typer.Option(
        None, "--num-frames", help="Target frames (temporal embedding sliced / zero-padded)."
    ),
    max_text_len: int = typer.Option(
        None, "--max-text-len", help="Target text length (position table adapted)."
    ),
    num_heads: int = typer.Option(
        None, "--num-heads", help="Attention heads, for widths other than Ti/S/B."
    ),
    patch_order: str = typer.Option(
        "raster", "--patch-order", help="raster (deterministic) or random (official)."
    ),
    text_positions: str = typer.Option(
        "copy", "--text-positions", help="copy (keep first rows) or reinit (official fine-tune)."
    ),
) -> None:
    """Convert an official All-in-one checkpoint (no pickled code is executed)."""
    from leanvl.convert.allinone import convert_allinone

    if patch_order not in ("raster", "random"):
        raise typer.BadParameter(
            f"{patch_order!r}: expected raster or random", param_hint="--patch-order"
        )
    if text_positions not in ("copy", "reinit"):
        raise typer.BadParameter(
            f"{text_positions!r}: expected copy or reinit", param_hint="--text-positions"
        )
    try:
        report = convert_allinone(
            in_path,
            out_dir,
            num_frames=num_frames,
            max_text_len=max_text_len,
            num_heads=num_heads,
            patch_order=patch_order,
            text_positions=text_positions,
        )
    except (ValueError, OSError) as exc:
        # bad or unsafe file, weights that do not fit, occupied output folder (the safe_load
        # errors are ValueErrors); one line naming the file and the problem, exit code 1
        typer.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.summary())
    typer.echo(f"wrote {out_dir} (open with leanvl.load)")
