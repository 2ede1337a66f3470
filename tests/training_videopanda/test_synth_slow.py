"""End to end on the synthetic benchmark with the shipped configs (slow: minutes on 2 cores).

The three stages (align -> caption -> instruct) of ``configs/videopanda_tiny_synth_*.yaml`` run
on a freshly generated benchmark; the instruct stage answers every test question by generation.
Exact match must beat the benchmark's majority-answer baseline (``meta.json``, a blind model
that always says the most frequent answer), overall and for each question type.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanvl.data.synth.dataset import SynthConfig, generate
from leanvl.training.config import load_train_config
from leanvl.training.runner import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
def test_three_stages_answer_synthetic_questions(tmp_path):
    root = tmp_path / "synth"
    generate(root, SynthConfig(train=400, val=0, test=60, frames=8, size=48, workers=2))
    steps = {"align": 60, "caption": 120, "instruct": 300}
    prev = None
    for stage, n in steps.items():
        overrides = [
            f"data.root={root}",
            f"run_dir={tmp_path / stage}",
            f"trainer.max_steps={n}",
            "trainer.progress=none",
            "resume=never",
        ]
        if prev:
            overrides.append(f"model.init={prev}")
        cfg = load_train_config(
            CONFIGS / f"videopanda_tiny_synth_{stage}.yaml", overrides=overrides
        )
        result = train(cfg)
        prev = result["model"]
    metrics = result["metrics"]
    chance = json.loads((root / "meta.json").read_text())["chance"]["qa"]
    print(json.dumps({k: v for k, v in metrics.items() if k != "predictions_file"}, indent=1))
    assert metrics["accuracy"] > chance["all"]["majority_accuracy"]
    for kind in ("static", "temporal"):
        assert metrics["by_type"][kind]["accuracy"] > chance[kind]["majority_accuracy"]
