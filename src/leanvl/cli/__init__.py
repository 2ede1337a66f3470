"""leanvl command-line interface (``leanvl --help``)."""

from __future__ import annotations

import sys

# Importing a command module registers its commands on the apps in leanvl.cli.app.
from leanvl.cli import (  # noqa: F401
    ask,
    bench,
    convert,
    convert_svitt,
    convert_videopanda,
    data_scan,
    data_synth,
    models,
    search,
    serve,
    train,
)
from leanvl.cli.app import GROUPS, app

for _name, _group in GROUPS.items():
    if _group.registered_commands or _group.registered_groups:
        app.add_typer(_group, name=_name)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``leanvl`` script. Exit codes: 0 ok, 1 failure, 2 usage error."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="leanvl")
