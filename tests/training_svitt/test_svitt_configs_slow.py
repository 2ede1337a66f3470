"""The shipped SViTT recipes, end to end through the CLI on the tiny synthetic benchmark (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leanvl.cli import main as cli_main
from leanvl.training.families.svitt_stages import main as stages_main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = ["data.image_size=32", "model.overrides.patch_size=8", "model.overrides.attn_block_size=16"]


def _cli(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(args)
    assert exit_.value.code == 0


@pytest.mark.slow
def test_svitt_ego_config_trains_then_evaluates_egomcq(synth_ego, tmp_path):
    run = tmp_path / "ego"
    common = [f"data.root={synth_ego}", f"run_dir={run}", "trainer.num_threads=1", *TINY,
              "data.batch_size=8"]  # fmt: skip
    _cli(["train", str(CONFIGS / "svitt_ego_synth.yaml"), *common, "trainer.max_steps=20"])
    at_end = json.loads((run / "metrics_test.json").read_text())["metrics"]
    out = tmp_path / "egomcq.json"
    _cli(["eval", str(CONFIGS / "svitt_ego_synth.yaml"), *common, "task.name=egomcq",
          f"ckpt={run / 'model'}", f"eval.out={out}"])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["task"] == "egomcq"
    m = report["metrics"]
    assert (m["n_intra"], m["n_inter"], m["n"]) == (25, 25, 50)
    assert m["intra"] == at_end["intra"] and m["inter"] == at_end["inter"]
    # The InfoNCE variant is an override away.
    run2 = tmp_path / "info"
    variant = ["task.contrastive_loss=infonce", "data.sampler=random", "trainer.max_steps=5"]
    _cli(["train", str(CONFIGS / "svitt_ego_synth.yaml"), *common, f"run_dir={run2}", *variant])
    assert json.loads((run2 / "metrics_test.json").read_text())["metrics"]["n"] == 50


@pytest.mark.slow
def test_svitt_pretrain_and_expansion_configs_run(synth_ego, tmp_path):
    common = [f"data.root={synth_ego}", "trainer.num_threads=1", *TINY, "data.batch_size=6",
              "trainer.max_steps=4", "eval.rerank_k=3"]  # fmt: skip
    run = tmp_path / "pre"
    _cli(["train", str(CONFIGS / "svitt_tiny_synth_pretrain.yaml"), *common, f"run_dir={run}"])
    m = json.loads((run / "metrics_test.json").read_text())["metrics"]
    assert m["n_videos"] == 6 and m["itm_rerank"]["k"] == 3
    exp = tmp_path / "exp"
    code = stages_main(
        [str(CONFIGS / "svitt_tiny_synth_expansion.yaml"), *common, f"run_dir={exp}"]
    )
    assert code == 0
    stages = json.loads((exp / "stages.json").read_text())["stages"]
    assert [(s["name"], s["num_frames"]) for s in stages] == [("f4", 4), ("f8", 8)]
    assert stages[1]["init"] == str(exp / "f4" / "model")
