"""Fixtures of the SViTT recipe tests: a tiny synthetic benchmark with the ego flavour, and
recipes for it (SViTT presets at 32 px, patch 8, so 16 patches per frame)."""

from __future__ import annotations

from pathlib import Path

import pytest

from leanvl.data.synth import SynthConfig, generate

TINY = SynthConfig(
    train=12, val=0, test=6, frames=8, size=32, captions_per_clip=2, ego=True, ego_videos=6,
    ego_mcq_videos=5, ego_clips_per_video=5, workers=1,
)  # fmt: skip
"""12 retrieval training clips, 6 test clips; 30 EgoClip clips (6 videos x 5), EgoMCQ over 5
held-out videos (25 intra-video + 25 inter-video questions)."""

MODEL = {"patch_size": 8, "attn_block_size": 16, "drop_path_rate": 0.0, "text_dropout": 0.0}


@pytest.fixture(scope="session")
def synth_ego(tmp_path_factory) -> Path:
    """Folder of the tiny synthetic benchmark (real mp4s, both flavours)."""
    return generate(tmp_path_factory.mktemp("synth") / "tiny", TINY)


def ego_recipe(root: Path, run_dir: Path, **sections) -> dict:
    """SViTT-Ego pretraining (EgoNCE, scene batches) on EgoClip, EgoMCQ at the end."""
    recipe = {
        "task": {"name": "pretrain", "contrastive_loss": "egonce", "mlm_weight": 1.0},
        "data": {
            "root": str(root),
            "video_dir": "videos_ego",
            "train_file": "annotations/egoclip.csv",
            "test_file": "annotations/egomcq.json",
            "sampler": "scene",
            "num_frames": 4,
            "image_size": 32,
            "eval_sample": "uniform",
            "max_text_len": 16,
            "batch_size": 8,
            "eval_batch_size": 10,
            "cache_frames": 4,
        },
        "model": {"name": "svitt_ego_tiny", "overrides": dict(MODEL)},
        "optim": {"lr": 1e-3, "head_names": []},
        "trainer": {"max_steps": 3, "progress": "none", "log_every_n_steps": 1, "num_threads": 1},
        "eval": {"at_end": True},
        "run_dir": str(run_dir),
        "resume": "never",
    }
    return _update(recipe, sections)


def ret_recipe(root: Path, run_dir: Path, **sections) -> dict:
    """SViTT pretraining (ITC + ITM + MLM) on the retrieval JSON, retrieval at the end."""
    recipe = {
        "task": {"name": "pretrain", "mlm_weight": 1.0},
        "data": {
            "root": str(root),
            "train_file": "annotations/ret_train.json",
            "test_file": "annotations/ret_test.json",
            "num_frames": 4,
            "image_size": 32,
            "max_text_len": 16,
            "batch_size": 6,
            "eval_batch_size": 4,
            "cache_frames": 8,
        },
        "model": {"name": "svitt_tiny", "overrides": dict(MODEL)},
        "optim": {"lr": 1e-3, "head_names": []},
        "trainer": {"max_steps": 3, "progress": "none", "log_every_n_steps": 1, "num_threads": 1},
        "eval": {"at_end": True, "rerank_k": 3},
        "run_dir": str(run_dir),
        "resume": "never",
    }
    return _update(recipe, sections)


def _update(recipe: dict, sections: dict) -> dict:
    for section, values in sections.items():
        if isinstance(values, dict):
            recipe[section].update(values)
        else:
            recipe[section] = values
    return recipe


def vqa_recipe(root: Path, run_dir: Path, **sections) -> dict:
    """SViTT VQA (answer decoder on the ground-truth answer) on the QA JSON, QA at the end:
    :func:`ret_recipe` with the QA files, the VQA preset and no re-ranking."""
    recipe = ret_recipe(root, run_dir)
    recipe["task"] = {"name": "qa"}
    recipe["eval"] = {"at_end": True}
    recipe["data"].update(
        train_file="annotations/qa_train.json",
        test_file="annotations/qa_test.json",
        answers_file="annotations/qa_answers.json",
        batch_size=8,
        eval_batch_size=8,
    )
    recipe["model"]["name"] = "svitt_tiny_vqa"
    return _update(recipe, sections)
