"""Fixtures of the training tests: a tiny real-mp4 dataset and a recipe for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_data import make_tiny_dataset  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Folder of the tiny dataset (24 train / 16 test clips, 8 frames of 32x32)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def tiny_recipe(root: Path, run_dir: Path, task_name: str = "pretrain", **sections) -> dict:
    """A small recipe over the tiny dataset (allinone_tiny at 32 px, patch 8)."""
    files = {
        "pretrain": ("ret_train.json", "ret_test.json"),
        "retrieval": ("ret_train.json", "ret_test.json"),
        "qa": ("qa_train.json", "qa_test.json"),
        "mc": (None, "mc_test.jsonl"),
    }[task_name]
    recipe = {
        "task": {"name": task_name},
        "data": {
            "root": str(root),
            "train_file": f"annotations/{files[0]}" if files[0] else None,
            "test_file": f"annotations/{files[1]}",
            "answers_file": "annotations/qa_answers.json",
            "image_size": 32,
            "num_frames": 3,
            "batch_size": 8,
            "eval_batch_size": 5,
            "cache_frames": 8,
        },
        "model": {"overrides": {"patch_size": 8, "drop_rate": 0.0, "drop_path_rate": 0.0}},
        "optim": {"lr": 1e-3},
        "trainer": {"max_steps": 6, "progress": "none", "log_every_n_steps": 1, "num_threads": 1},
        "eval": {"at_end": False},
        "run_dir": str(run_dir),
        "resume": "never",
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            recipe[section].update(values)
        else:
            recipe[section] = values
    return recipe
