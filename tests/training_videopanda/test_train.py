"""The three Video-Panda stages through the training engine (``leanvl train`` / ``eval``)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from leanvl.checkpoint import load, read_config
from leanvl.config import ConfigError
from leanvl.training.config import load_train_config
from leanvl.training.families import hooks_for
from leanvl.training.families.videopanda import (
    VideoPandaRecipe,
    exact_match_metrics,
    load_tokenizer_of,
    recipe_of,
)
from leanvl.training.runner import evaluate, train
from tests.training_videopanda.recipes import vp_recipe


def test_family_hook_is_found():
    assert hooks_for("videopanda_tiny").__name__.endswith("families.videopanda")
    assert hooks_for("allinone_tiny") is None


def test_stage_comes_from_model_overrides(vp_synth, tmp_path):
    recipe = vp_recipe(vp_synth, tmp_path, "align")
    cfg = load_train_config(recipe, overrides=["model.overrides.videopanda.stage=caption"])
    assert recipe_of(cfg).stage == "caption"
    assert recipe_of(load_train_config(recipe)).teacher.layer == -2
    with pytest.raises(ConfigError, match=r"model.overrides.videopanda.stage='pretrain'"):
        recipe_of(
            load_train_config(recipe, overrides=["model.overrides.videopanda.stage=pretrain"])
        )
    with pytest.raises(ConfigError, match=r"model.overrides.videopanda: .*distil_weight"):
        recipe_of(
            load_train_config(recipe, overrides=["model.overrides.videopanda.distil_weight=1"])
        )
    with pytest.raises(ConfigError, match="lora_rank=8: LoRA is for the instruct stage"):
        recipe_of(load_train_config(recipe, overrides=["model.overrides.videopanda.lora_rank=8"]))
    assert VideoPandaRecipe().distill_weight == 1.0  # the official weight


def test_exact_match_metrics_by_type():
    out = exact_match_metrics(
        ["Red.", "two", "left", "yes"],
        [("red",), ("one",), ("left", "to the left"), ("no",)],
        ["static", "static", "temporal", None],
    )
    assert out["accuracy"] == 0.5 and out["n"] == 4
    assert out["by_type"] == {
        "static": {"accuracy": 0.5, "n": 2},
        "temporal": {"accuracy": 1.0, "n": 1},
    }


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_align_then_instruct(vp_synth, tmp_path):
    """Stage 1 trains STAB + projector only (LLM frozen) with distillation; stage 3 starts
    from it, inherits config and tokenizer, trains the LLM, and answers by generation."""
    torch.manual_seed(0)
    align = load_train_config(vp_recipe(vp_synth, tmp_path / "align", "align"))
    out = train(align)
    header, *_ = (tmp_path / "align/logs/metrics.csv").read_text().splitlines()
    assert "train/distill" in header and "train/lm" in header
    assert out["steps"] == 3
    folder = tmp_path / "align/model"
    meta = read_config(folder)
    tok = load_tokenizer_of(load(folder).config)
    assert meta["config"]["llm"]["vocab_size"] == len(tok) < 512
    assert meta["config"]["num_frames"] == 4 and meta["config"]["image_size"] == 32
    assert not any("distill_head" in k for k in _weights(folder))
    # the LLM did not move, the STAB did (rebuilt in the runner's order from the same seed)
    L.seed_everything(align.trainer.seed, workers=True, verbose=False)
    hooks = hooks_for("videopanda_tiny")
    fresh = hooks.build_model(align, hooks.build_datamodule(align))
    trained = _weights(folder)
    fresh_state = fresh.state_dict()
    llm = [k for k in trained if k.startswith("llm.")]
    stab = [k for k in trained if k.startswith("stab.patch_embed")]
    assert llm and all(torch.equal(trained[k], fresh_state[k]) for k in llm)
    assert not torch.equal(trained[stab[0]], fresh_state[stab[0]])

    instruct = load_train_config(
        vp_recipe(
            vp_synth,
            tmp_path / "instruct",
            "instruct",
            model={"init": str(folder)},
            eval={"at_end": True},
        )
    )
    res = train(instruct)
    after = _weights(tmp_path / "instruct/model")
    assert any(not torch.equal(after[k], trained[k]) for k in llm)  # the LLM trained
    assert (
        read_config(tmp_path / "instruct/model")["config"]["extra"]["tokenizer"]
        == (meta["config"]["extra"]["tokenizer"])
    )
    metrics = res["metrics"]
    n_test = len(json.loads((vp_synth / "annotations/qa_test.json").read_text()))
    assert metrics["n"] == n_test
    assert set(metrics["by_type"]) == {"static", "temporal"}
    preds = [json.loads(x) for x in (tmp_path / "instruct/predictions_test.jsonl").open()]
    assert len(preds) == n_test and {"id", "question", "answer", "pred"} <= set(preds[0])
    hits = sum(" ".join(p["pred"].lower().split()) == p["answer"].lower() for p in preds)
    assert metrics["accuracy"] == pytest.approx(hits / n_test)
    # leanvl eval on the exported folder reproduces the end-of-training numbers
    again = evaluate(instruct)
    assert again["accuracy"] == metrics["accuracy"]
    assert again["by_type"] == metrics["by_type"]


def test_init_must_fit(vp_synth, tmp_path):
    recipe = vp_recipe(vp_synth, tmp_path / "x", "caption", model={"init": str(vp_synth)})
    cfg = load_train_config(recipe)
    with pytest.raises(FileNotFoundError, match="not a leanvl checkpoint folder"):
        train(cfg)
