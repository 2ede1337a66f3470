"""Discovery of golden fixtures: folders of ``weights.safetensors`` + ``io.safetensors`` +
``manifest.json`` produced by running the official code.

Fixtures come from ``../shared/golden/*`` (matched by the official repository named in the
manifest) and from every folder in the colon-separated ``LEANVL_EXTRA_GOLDEN`` environment
variable (same layout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

GOLDEN_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "golden"
FILES = ("manifest.json", "weights.safetensors", "io.safetensors")


def _is_fixture(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def golden_fixtures(repository: str) -> list[Path]:
    """Fixture folders whose manifest names ``repository`` (e.g. ``"showlab/all-in-one"``)."""
    candidates = sorted(GOLDEN_ROOT.glob("*")) if GOLDEN_ROOT.is_dir() else []
    extra = [Path(p) for p in os.environ.get("LEANVL_EXTRA_GOLDEN", "").split(":") if p]
    found = []
    for folder in candidates + extra:
        if not _is_fixture(folder):
            continue
        manifest = (folder / "manifest.json").read_text(encoding="utf-8").lower()
        if repository.lower() in manifest:
            found.append(folder)
    return found


def parametrize_fixtures(repository: str):
    """``@parametrize_fixtures("showlab/all-in-one")``: one test per fixture, named by folder."""
    folders = golden_fixtures(repository)
    return pytest.mark.parametrize("golden", folders, ids=[f.name for f in folders] or None)


def load_manifest(folder: Path) -> dict:
    """The parsed manifest of fixture ``folder``."""
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
