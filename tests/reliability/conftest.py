"""Fixtures of the fault-injection tests (``pytest -m faults``; docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import make_synth


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """The tiny synthetic benchmark (read-only: copy it before damaging anything)."""
    return make_synth(tmp_path_factory.mktemp("synth") / "data")
