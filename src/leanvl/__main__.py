"""``python -m leanvl`` runs the command-line interface."""

from leanvl.cli import main

main()
