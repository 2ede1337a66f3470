"""The typer applications that command modules register on.

Each ``leanvl.cli.<topic>`` module adds its commands to one of these objects; ``leanvl.cli``
imports them all and mounts a group only when it has at least one command, so ``leanvl --help``
never lists a command that does not exist.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="leanvl",
    help="Efficient video-language models: All-in-one, SViTT / SViTT-Ego, Video-Panda.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Inspect, validate and generate video-text datasets.", no_args_is_help=True
)
convert_app = typer.Typer(
    help="Convert official checkpoints to leanvl checkpoint folders.", no_args_is_help=True
)
bench_app = typer.Typer(help="Measure speed, FLOPs and memory.", no_args_is_help=True)

GROUPS = {"data": data_app, "convert": convert_app, "bench": bench_app}


@app.callback()
def _root() -> None:
    """Efficient video-language models: All-in-one, SViTT / SViTT-Ego, Video-Panda."""
    # A callback keeps `leanvl` a command group even while it has a single command.


def print_error(console, message: str) -> None:
    """Print ``error: MESSAGE`` on ``console``: the message verbatim (no rich markup, so paths
    with brackets survive) and unwrapped (a long path stays on one line for grep and tests)."""
    console.print("[red]error:[/red]", end=" ")
    console.print(str(message), highlight=False, markup=False, soft_wrap=True)


def fail(console, message: str, code: int = 1):
    """:func:`print_error`, then exit with ``code`` (1: the input was bad; 2: usage)."""
    print_error(console, message)
    raise typer.Exit(code)
