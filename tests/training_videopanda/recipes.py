"""Tiny Video-Panda recipes of the tests."""

from __future__ import annotations

from pathlib import Path


def vp_recipe(root: Path, run_dir: Path, stage: str, **sections) -> dict:
    """A tiny Video-Panda recipe (videopanda_tiny at 32 px, 4 frames, a 16 px teacher)."""
    train = "annotations/ret_train.json" if stage in ("align", "caption") else None
    recipe = {
        "data": {
            "root": str(root),
            "train_file": train or "annotations/qa_train.json",
            "test_file": "annotations/qa_test.json",
            "num_frames": 4,
            "image_size": 32,
            "max_text_len": 96,
            "batch_size": 4,
            "eval_batch_size": 20,
            "cache_frames": 4,
        },
        "model": {
            "name": "videopanda_tiny",
            "overrides": {
                "gstra_dropout": 0.0,
                "fusion_dropout": 0.0,
                "videopanda": {
                    "stage": stage,
                    "vocab_from": ["annotations/ret_train.json", "annotations/qa_train.json"],
                    "max_new_tokens": 3,
                },
            },
        },
        "optim": {"lr": 1e-3, "weight_decay": 0.0},
        "trainer": {"max_steps": 3, "progress": "none", "log_every_n_steps": 1, "num_threads": 1},
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
