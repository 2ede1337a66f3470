"""Fixtures of the Video-Panda recipe tests: a small synthetic benchmark and tiny recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from leanvl.data.synth.dataset import SynthConfig, generate


@pytest.fixture(scope="session")
def vp_synth(tmp_path_factory) -> Path:
    """A small synthetic benchmark (24 train / 10 test clips of 8 frames, 32 px)."""
    root = tmp_path_factory.mktemp("vp_synth") / "synth"
    generate(root, SynthConfig(train=24, val=0, test=10, frames=8, size=32, workers=1))
    return root
