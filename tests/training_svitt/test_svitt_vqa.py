"""SViTT VQA (``svitt_*_vqa`` presets, ``task.name=qa``) through the real training engine."""

from __future__ import annotations

import json

import pytest
import torch

import leanvl
from conftest import vqa_recipe
from leanvl.training.config import load_train_config
from leanvl.training.families import hooks_for
from leanvl.training.runner import evaluate, train


def test_vqa_trains_and_reports_qa_metrics(synth_ego, tmp_path):
    run = tmp_path / "vqa"
    recipe = vqa_recipe(synth_ego, run, trainer={"max_steps": 30}, optim={"lr": 2e-3})
    result = train(load_train_config(recipe))
    losses = [v for _, v in result["losses"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    m = result["metrics"]
    questions = json.loads((synth_ego / "annotations" / "qa_test.json").read_text())
    assert m["n"] == len(questions) and m["n_out_of_vocab"] == 0
    assert set(m["by_type"]) == {"static", "temporal"}
    assert set(m["by_kind"]) == {q["kind"] for q in questions}
    assert 0.0 <= m["accuracy"] <= 1.0

    assert isinstance(leanvl.load(run / "model"), leanvl.models.svitt.SViTTVQA)
    recipe["eval"] = {"shuffle_frames": True, "out": str(tmp_path / "shuffled.json")}
    shuffled = evaluate(load_train_config({**recipe, "ckpt": str(run / "model")}))
    assert shuffled["n"] == m["n"]


def test_vqa_loss_is_the_decoder_nll_of_the_ground_truth_answer(synth_ego, tmp_path):
    cfg = load_train_config(vqa_recipe(synth_ego, tmp_path, data={"cache": False}))
    hooks = hooks_for(cfg.model.name)
    data = hooks.build_datamodule(cfg)
    model = hooks.build_model(cfg, data).eval()
    task = hooks.build_task(cfg, data)
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        loss = task.losses(model, batch)["qa"]
        states = model.encode_question(
            (batch["video"].permute(0, 1, 4, 2, 3).float() / 255 - 0.5) / 0.5,
            batch["text_ids"], batch["text_mask"],
        )  # fmt: skip
        nll = []
        for i, label in enumerate(batch["label"].tolist()):
            answer = data.answers[label]
            enc = data.tokenizer([answer], return_tensors="pt")  # [CLS] answer [SEP]
            nll.append(
                model.answer_nll(
                    enc["input_ids"],
                    enc["attention_mask"],
                    states[i : i + 1],
                    batch["text_mask"][i : i + 1],
                )  # fmt: skip
            )
    assert float(loss) == pytest.approx(float(torch.cat(nll).mean()), rel=1e-5)


@pytest.mark.parametrize(("task", "model"), [("qa", "svitt_tiny"), ("pretrain", "svitt_tiny_vqa")])
def test_vqa_needs_the_vqa_preset_and_the_qa_task(synth_ego, tmp_path, task, model):
    recipe = vqa_recipe(synth_ego, tmp_path, task={"name": task}, model={"name": model})
    cfg = load_train_config(recipe)
    with pytest.raises(ValueError, match="needs a VQA preset"):
        hooks_for(cfg.model.name).build_datamodule(cfg)


def test_vqa_starts_from_a_pretraining_run(synth_ego, tmp_path):
    # The encoders load from the pretraining checkpoint; its heads are left out; the answer
    # decoder stays as initialised. A plain SViTT refuses a checkpoint with unknown tensors.
    from conftest import ret_recipe

    pre = tmp_path / "pre"
    train(load_train_config(ret_recipe(synth_ego, pre, trainer={"max_steps": 1},
                                       eval={"at_end": False})))  # fmt: skip
    init = {"init": str(pre / "model")}
    cfg = load_train_config(vqa_recipe(synth_ego, tmp_path / "vqa", model=init))
    model = hooks_for(cfg.model.name).build_model(cfg)
    source = leanvl.load(pre / "model").state_dict()
    own = model.state_dict()
    for key in ("vision.patch_embed.weight", "text_embeddings.word.weight"):
        torch.testing.assert_close(own[key], source[key])
    assert not any(k.startswith(("itm_head", "mlm_head", "vision_proj")) for k in own)
    fresh = hooks_for(cfg.model.name).build_model(
        load_train_config(vqa_recipe(synth_ego, tmp_path / "fresh"))
    )
    assert not torch.equal(fresh.state_dict()["vision.patch_embed.weight"],
                           own["vision.patch_embed.weight"])  # fmt: skip


def test_shipped_vqa_config_runs(synth_ego, tmp_path):
    from pathlib import Path

    from leanvl.cli import main as cli_main

    config = Path(__file__).resolve().parents[2] / "configs" / "svitt_tiny_synth_vqa.yaml"
    args = [f"data.root={synth_ego}", f"run_dir={tmp_path / 'run'}", "data.image_size=32",
            "model.overrides.attn_block_size=16", "trainer.max_steps=2", "trainer.num_threads=1",
            "data.batch_size=4", "data.cache_frames=8"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", str(config), *args])
    assert exit_.value.code == 0
    report = json.loads((tmp_path / "run" / "metrics_test.json").read_text())
    assert report["task"] == "qa" and "by_kind" in report["metrics"]
