"""LoRA (peft) on the LLM in the Video-Panda instruct stage: only the adapters (and the STAB and
projector) train, the exported folder is the plain model with the adapters merged, resume is
exact, bad settings and a missing peft are reported clearly."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from leanvl.checkpoint import load, save_model
from leanvl.config import ConfigError
from leanvl.models.videopanda import VideoPanda
from leanvl.training.callbacks import read_lightning_checkpoint
from leanvl.training.config import load_train_config
from leanvl.training.families import hooks_for
from leanvl.training.families.videopanda import LORA_TARGETS, VideoPandaRecipe, recipe_of
from leanvl.training.runner import train
from tests.training_videopanda.recipes import vp_recipe

HOOKS = hooks_for("videopanda_tiny")
RANK = 4
TRAINER = {"max_steps": 6, "checkpoint_every_n_steps": 3, "keep_checkpoints": -1}


def _recipe(root: Path, run_dir: Path, init: Path | None = None, **videopanda) -> dict:
    recipe = vp_recipe(root, run_dir, "instruct", trainer=TRAINER)
    if init is not None:
        recipe["model"]["init"] = str(init)
    recipe["model"]["overrides"]["videopanda"].update(
        {"lora_rank": RANK, "distill_weight": 0.0, **videopanda}
    )
    return recipe


def _build(recipe: dict, seed: int | None = None) -> tuple[VideoPanda, object]:
    """The model and data module the runner builds (same seed, same order)."""
    cfg = load_train_config(recipe)
    L.seed_everything(cfg.trainer.seed if seed is None else seed, workers=True, verbose=False)
    dm = HOOKS.build_datamodule(cfg)
    return HOOKS.build_model(cfg, dm), dm


def _with(recipe: dict, **videopanda) -> dict:
    """``recipe["model"]`` with ``videopanda`` settings changed."""
    model = {**recipe["model"], "overrides": {**recipe["model"]["overrides"]}}
    model["overrides"]["videopanda"] = {**model["overrides"]["videopanda"], **videopanda}
    return model


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(batch["input_ids"], batch["frames"], batch["attention_mask"]).logits


@pytest.fixture(scope="module")
def lora_run(vp_synth, tmp_path_factory):
    """A plain init folder (a random tiny model, standing for the caption stage's export) and
    a 6-step LoRA instruct run from it (checkpoints at steps 3 and 6)."""
    tmp = tmp_path_factory.mktemp("vp_lora")
    base = vp_recipe(vp_synth, tmp / "none", "instruct")
    dm = HOOKS.build_datamodule(load_train_config(base))
    torch.manual_seed(1)
    init = save_model(VideoPanda(dm.model_config), tmp / "init")
    recipe = _recipe(vp_synth, tmp / "run", init)
    out = train(load_train_config(recipe))
    return {"init": init, "recipe": recipe, "out": out, "run": tmp / "run", "vp_synth": vp_synth}


def test_only_adapters_stab_and_projector_train(lora_run):
    model, _ = _build(lora_run["recipe"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    llm = {n for n, _ in model.named_parameters() if n.startswith("llm.")}
    adapters = {n for n in llm if ".lora_A." in n or ".lora_B." in n}
    # every Linear of both decoder layers, A and B each; nothing else of the LLM trains
    assert len(adapters) == 2 * len(LORA_TARGETS) * model.config.llm.num_hidden_layers
    assert trainable & llm == adapters
    assert not any("lm_head" in n or "embed_tokens" in n for n in adapters)
    # the instruct stage's other rules: the STAB and the projector train
    others = {n for n, _ in model.named_parameters() if n.startswith(("stab.", "projector."))}
    assert others and others <= trainable
    q = model.llm.model.layers[0].self_attn.q_proj
    assert q.lora_A["default"].weight.shape[0] == RANK
    assert q.scaling["default"] == 2.0  # alpha defaults to 2 * rank (LLaVA-1.5's 256 / 128)
    assert q.lora_dropout["default"].p == 0.05
    other, _ = _build({**lora_run["recipe"], "model": _with(lora_run["recipe"], lora_alpha=3)})
    assert other.llm.model.layers[1].mlp.down_proj.scaling["default"] == 3 / RANK


def test_base_llm_frozen_adapters_and_loss_move(lora_run):
    out = lora_run["out"]
    assert out["steps"] == 6
    losses = [v for _, v in out["losses"]]
    assert sum(losses[-2:]) < sum(losses[:2])  # the loss falls
    trained = _strip(
        read_lightning_checkpoint(lora_run["run"] / "checkpoints/last.ckpt")["state_dict"]
    )
    fresh, _ = _build(lora_run["recipe"])
    fresh_state = fresh.state_dict(prefix="model.")  # nested: the unmerged entries
    fresh_state = _strip(fresh_state)
    init = load_file(str(lora_run["init"] / "model.safetensors"))
    base = [k for k in trained if k.startswith("llm.") and ".lora_" not in k]
    assert any(".base_layer." in k for k in base)
    for k in base:  # the LLM's own weights are bit-identical to model.init's
        assert torch.equal(trained[k], init[k.replace(".base_layer.", ".")]), k
    lora_b = [k for k in trained if ".lora_B." in k]
    lora_a = [k for k in trained if ".lora_A." in k]
    assert lora_b and all(not torch.equal(trained[k], fresh_state[k]) for k in lora_b)
    assert all(torch.count_nonzero(fresh_state[k]) == 0 for k in lora_b)  # B starts at zero
    assert any(not torch.equal(trained[k], fresh_state[k]) for k in lora_a)
    proj = [k for k in trained if k.startswith("projector.")]
    assert any(not torch.equal(trained[k], init[k]) for k in proj)


def test_export_is_the_merged_plain_model(lora_run):
    folder = lora_run["run"] / "model"
    saved = load_file(str(folder / "model.safetensors"))
    plain = VideoPanda(load(lora_run["init"]).config).state_dict()
    assert set(saved) == set(plain)  # no base_layer / lora_ keys
    assert not any("lora_" in k or "base_layer" in k for k in saved)
    exported = load(folder)

    # the trained peft model, merged by peft itself
    from peft.tuners.lora import LoraLayer

    peft_model, dm = _build(lora_run["recipe"])
    state = read_lightning_checkpoint(lora_run["run"] / "checkpoints/last.ckpt")["state_dict"]
    peft_model.load_state_dict(_strip(state))
    (ds,), _ = dm.eval_split("test")
    batch = dm.collate()([ds[(i, 0)] for i in range(3)])
    unmerged = _logits(peft_model, batch)
    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    assert len(layers) == len(LORA_TARGETS) * 2
    for m in layers:
        m.merge()
    merged = _logits(peft_model, batch)
    got = _logits(exported, batch)
    torch.testing.assert_close(got, merged, rtol=0, atol=1e-5)
    torch.testing.assert_close(got, unmerged, rtol=0, atol=1e-4)
    before = _logits(load(lora_run["init"]), batch)
    assert (got - before).abs().max() > 1e-3  # training changed the answers' logits


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_resume_auto_continues_exactly(lora_run, tmp_path):
    run = tmp_path / "resumed"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(lora_run["run"] / "checkpoints/step3.ckpt", run / "checkpoints/last.ckpt")
    recipe = _recipe(lora_run["vp_synth"], run, lora_run["init"])
    recipe["resume"] = "auto"
    out = train(load_train_config(recipe))
    assert [s for s, _ in out["losses"]] == [3, 4, 5]
    assert out["losses"] == lora_run["out"]["losses"][3:]
    a = load_file(str(lora_run["run"] / "model/model.safetensors"))
    b = load_file(str(run / "model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the step-6 checkpoints too (the resumed run writes last-v1.ckpt beside the copied one)
    ca = read_lightning_checkpoint(lora_run["run"] / "checkpoints/step6.ckpt")["state_dict"]
    cb = read_lightning_checkpoint(run / "checkpoints/step6.ckpt")["state_dict"]
    assert any(".lora_A." in k for k in ca)  # the resume checkpoint keeps the adapters
    assert ca.keys() == cb.keys() and all(torch.equal(ca[k], cb[k]) for k in ca)


def test_lora_with_distillation(lora_run, tmp_path):
    recipe = _recipe(lora_run["vp_synth"], tmp_path, lora_run["init"], distill_weight=1.0)
    recipe["trainer"] = {**recipe["trainer"], "max_steps": 2}
    out = train(load_train_config(recipe))
    assert out["steps"] == 2
    assert "train/distill" in (tmp_path / "logs/metrics.csv").read_text().splitlines()[0]
    keys = load_file(str(tmp_path / "model/model.safetensors")).keys()
    assert not any("lora_" in k or "distill_head" in k or "base_layer" in k for k in keys)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lora_rank=-1", r"videopanda\.lora_rank=-1: must be >= 0"),
        ("lora_alpha=0", r"videopanda\.lora_alpha=0\.0: must be > 0"),
        ("lora_dropout=1.0", r"videopanda\.lora_dropout=1\.0: must be in \[0, 1\)"),
        ("lora_target_modules=[]", r"videopanda\.lora_target_modules=\[\]: must name"),
        ("lora_target_modules=[self_attn.q_proj]", r"lora_target_modules=.*not module names"),
        ("lora_target_modules=[q_proj,q_proj]", r"lora_target_modules=.*twice"),
        ("stage=align", r"videopanda\.lora_rank=4: LoRA is for the instruct stage"),
        ("stage=caption", r"lora_rank=4: .*the caption stage trains the LLM fully"),
        ("train_llm=true", r"videopanda\.train_llm=True: leave it unset"),
    ],
)
def test_bad_lora_settings_name_the_field(vp_synth, tmp_path, override, message):
    recipe = _recipe(vp_synth, tmp_path)
    cfg = load_train_config(recipe, overrides=[f"model.overrides.videopanda.{override}"])
    with pytest.raises(ConfigError, match=message):
        recipe_of(cfg)


def test_defaults():
    r = VideoPandaRecipe()
    assert (r.lora_rank, r.lora_alpha, r.lora_dropout) == (0, None, 0.05)
    assert r.lora_target_modules == list(LORA_TARGETS)


@pytest.mark.parametrize("name", ["qkv_proj", "lm_head", "embed_tokens"])
def test_unknown_target_module_names_the_field(vp_synth, tmp_path, name):
    recipe = _recipe(vp_synth, tmp_path, lora_target_modules=["q_proj", name])
    with pytest.raises(ConfigError, match=rf"lora_target_modules=.*\['{name}'\] are not Linear"):
        _build(recipe)


def test_missing_peft_says_how_to_install(lora_run, vp_synth, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now fails
    with pytest.raises(
        ModuleNotFoundError, match=r"lora_rank=4 needs peft.*pip install 'leanvl\[lora\]'"
    ):
        _build(_recipe(vp_synth, tmp_path))
    # the exported folder needs no peft: it loads and answers
    model = load(lora_run["run"] / "model")
    assert not any("lora_" in k for k in model.state_dict())
    # and the recipe itself (what `leanvl eval` reads) is checked without peft
    assert recipe_of(load_train_config(lora_run["recipe"])).lora_rank == RANK
