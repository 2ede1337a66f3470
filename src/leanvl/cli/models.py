"""``leanvl models``: list the registered model presets."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from leanvl.cli.app import app


@app.command("models")
def models_command(
    pattern: str = typer.Argument(None, help="Only names containing this text."),
    params: bool = typer.Option(False, "--params", help="Build each model and count parameters."),
) -> None:
    """List model presets (names for `leanvl.create_model`)."""
    from leanvl.registry import create_model, list_models, model_summary

    table = Table("model", "description", *(["parameters"] if params else []))
    for name in list_models(pattern):
        row = [name, model_summary(name)]
        if params:
            model = create_model(name)
            row.append(f"{sum(p.numel() for p in model.parameters()):,}")
        table.add_row(*row)
    Console().print(table)
