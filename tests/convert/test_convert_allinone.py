"""``leanvl convert allinone``: official checkpoint layouts -> leanvl folders (tiny models)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import leanvl
from leanvl.cli.app import app
from leanvl.convert.allinone import convert_allinone
from tests.parity.test_allinone_parity import write_official_checkpoint

runner = CliRunner()


def make_model(**overrides):
    torch.manual_seed(0)
    model = leanvl.create_model("allinone_tiny", **overrides).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def official_state(model) -> dict[str, torch.Tensor]:
    """The model's weights under the official key set (position_ids buffer, rank_output)."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["text_embeddings.position_ids"] = torch.arange(model.config.max_text_len)[None]
    if model.itm_score is not None:
        state["rank_output.weight"] = state["itm_score.fc.weight"][1:].clone()
        state["rank_output.bias"] = state["itm_score.fc.bias"][1:].clone()
    return state


OFFICIAL_CONFIG = {"vit": "vit_custom_patch16_64", "num_heads": 2, "num_frames": 3}


def inputs(model, frames=None):
    g = torch.Generator().manual_seed(3)
    cfg = model.config
    video = torch.randn(2, frames or cfg.num_frames, 3, cfg.image_size, cfg.image_size, generator=g)
    ids = torch.randint(104, 2000, (2, 10), generator=g)
    return video, ids, torch.ones(2, 10, dtype=torch.long)


def cli(*args: str):
    return runner.invoke(app, ["convert", "allinone", *map(str, args)])


@torch.no_grad()
def test_lightning_checkpoint_roundtrip_is_exact(tmp_path):
    model = make_model()
    ckpt = write_official_checkpoint(tmp_path / "a.ckpt", official_state(model), OFFICIAL_CONFIG)
    result = cli(ckpt, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "dropped rank_output.weight" in result.output
    loaded = leanvl.load(tmp_path / "out")
    video, ids, mask = inputs(model)
    assert torch.equal(loaded(video, ids, mask).cls_feats, model(video, ids, mask).cls_feats)
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    report = meta["extra"]["conversion"]
    assert report["dropped"]["text_embeddings.position_ids"].startswith("constant buffer")
    assert report["inferred"]["num_heads"] == "2 from hyper_parameters num_heads"
    assert meta["config"]["num_answers"] == 16 and meta["config"]["vtc_dim"] == 32


@torch.no_grad()
def test_temporal_embedding_sliced_or_zero_padded(tmp_path):
    model = make_model()
    ckpt = write_official_checkpoint(tmp_path / "a.ckpt", official_state(model), OFFICIAL_CONFIG)
    temporal = model.transformer.temporal_embed
    assert cli(ckpt, tmp_path / "five", "--num-frames", 5).exit_code == 0
    five = leanvl.load(tmp_path / "five")
    assert torch.equal(five.transformer.temporal_embed[:, :3], temporal)
    assert torch.equal(five.transformer.temporal_embed[:, 3:], torch.zeros(1, 2, 64))
    assert five(*inputs(five, frames=5)).cls_feats.isfinite().all()
    # zero rows + fewer frames: a 3-frame clip gives the same result as before
    assert torch.equal(five(*inputs(model)).cls_feats, model(*inputs(model)).cls_feats)
    assert cli(ckpt, tmp_path / "two", "--num-frames", 2).exit_code == 0
    two = leanvl.load(tmp_path / "two")
    assert torch.equal(two.transformer.temporal_embed, temporal[:, :2])


def test_text_positions_copy_or_reinit(tmp_path):
    model = make_model()
    ckpt = write_official_checkpoint(tmp_path / "a.ckpt", official_state(model), OFFICIAL_CONFIG)
    table = model.text_embeddings.position_embeddings.weight
    assert cli(ckpt, tmp_path / "copy", "--max-text-len", 50).exit_code == 0
    copied = leanvl.load(tmp_path / "copy").text_embeddings.position_embeddings.weight
    assert copied.shape == (50, 64) and torch.equal(copied[:40], table)
    assert cli(ckpt, tmp_path / "short", "--max-text-len", 20).exit_code == 0
    assert torch.equal(
        leanvl.load(tmp_path / "short").text_embeddings.position_embeddings.weight, table[:20]
    )
    result = cli(ckpt, tmp_path / "re", "--max-text-len", 50, "--text-positions", "reinit")
    assert result.exit_code == 0 and "re-initialised" in result.output
    fresh = leanvl.load(tmp_path / "re").text_embeddings.position_embeddings.weight
    assert (fresh[:40] - table).abs().min() > 0
    assert 0.015 < fresh.std().item() < 0.025


@torch.no_grad()
def test_cotraining_names_prefix_and_plain_state_dicts(tmp_path):
    model = make_model(vtc_dim=0, num_answers=0, mc_vqa_head=False)
    state = official_state(model)
    state = {
        "module." + k.replace("itm_score.", "vtm_score."): v
        for k, v in state.items()
        if not k.startswith("rank_output")
    }
    torch.save(state, tmp_path / "plus.pth")
    report = convert_allinone(tmp_path / "plus.pth", tmp_path / "out", num_heads=2)
    assert report.renamed["module.vtm_score.fc.weight"] == "itm_score.fc.weight"
    loaded = leanvl.load(tmp_path / "out")
    video, ids, mask = inputs(model)
    out = loaded(video, ids, mask)
    assert torch.equal(
        loaded.itm_logits(out.cls_feats), model.itm_logits(model(video, ids, mask).cls_feats)
    )
    # a wrapper prefix on every key
    torch.save({"model." + k: v for k, v in official_state(model).items()}, tmp_path / "w.pth")
    convert_allinone(tmp_path / "w.pth", tmp_path / "wrapped", num_heads=2)
    assert torch.equal(leanvl.load(tmp_path / "wrapped")(video, ids, mask).cls_feats, out.cls_feats)
    # the same weights as .safetensors
    save_file(official_state(model), str(tmp_path / "w.safetensors"))
    convert_allinone(tmp_path / "w.safetensors", tmp_path / "st", num_heads=2)
    assert torch.equal(leanvl.load(tmp_path / "st")(video, ids, mask).cls_feats, out.cls_feats)


def test_head_layouts_are_inferred(tmp_path):
    model = make_model(qa_head="vqav2", num_answers=11, mlm_head=False, vtc_dim=0)
    torch.save(official_state(model), tmp_path / "vqa.ckpt")
    report = convert_allinone(tmp_path / "vqa.ckpt", tmp_path / "out", num_heads=2)
    cfg = report.config
    assert (cfg.qa_head, cfg.num_answers, cfg.mlm_head, cfg.vtc_dim) == ("vqav2", 11, False, 0)


def test_needs_num_heads_for_unknown_width(tmp_path):
    torch.save(official_state(make_model()), tmp_path / "a.ckpt")
    result = cli(tmp_path / "a.ckpt", tmp_path / "out")
    assert result.exit_code == 1
    assert "--num-heads" in result.output
    assert cli(tmp_path / "a.ckpt", tmp_path / "out", "--num-heads", 2).exit_code == 0


def test_bad_weights_are_refused_with_the_key_named(tmp_path):
    state = official_state(make_model())
    bad = dict(state, **{"rank_output.bias": state["rank_output.bias"] + 1})
    torch.save(bad, tmp_path / "rank.ckpt")
    result = cli(tmp_path / "rank.ckpt", tmp_path / "out", "--num-heads", 2)
    assert result.exit_code == 1 and "rank_output.bias is not ITM row 1" in result.output
    torch.save(dict(state, **{"extra_head.weight": torch.zeros(2)}), tmp_path / "extra.ckpt")
    result = cli(tmp_path / "extra.ckpt", tmp_path / "out", "--num-heads", 2)
    assert result.exit_code == 1 and "extra_head.weight" in result.output
    assert not (tmp_path / "out").exists()
    # heads leanvl does not implement are dropped and reported, not silently ignored
    torch.save(dict(state, **{"nlvr2_classifier.0.weight": torch.zeros(2)}), tmp_path / "n.ckpt")
    report = convert_allinone(tmp_path / "n.ckpt", tmp_path / "out", num_heads=2)
    assert "NLVR2" in report.dropped["nlvr2_classifier.0.weight"]


def test_missing_or_corrupt_input_exits_1_naming_the_file(tmp_path):
    result = cli(tmp_path / "nope.ckpt", tmp_path / "out")
    assert result.exit_code == 1 and "nope.ckpt" in result.output
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    result = cli(tmp_path / "junk.ckpt", tmp_path / "out")
    assert result.exit_code == 1 and "junk.ckpt" in result.output


def test_refuses_to_replace_a_folder_that_is_not_a_checkpoint(tmp_path):
    torch.save(official_state(make_model()), tmp_path / "a.ckpt")
    victim = tmp_path / "notes"
    victim.mkdir()
    (victim / "keep.txt").write_text("important")
    result = cli(tmp_path / "a.ckpt", victim, "--num-heads", 2)
    assert result.exit_code == 1 and "refusing" in result.output
    assert (victim / "keep.txt").read_text() == "important"


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = {"state_dict": official_state(make_model()), "hyper_parameters": _Exploit(marker)}
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    result = cli(tmp_path / "evil.ckpt", tmp_path / "out", "--num-heads", 2)
    assert result.exit_code == 1
    assert "system" in result.output
    assert not marker.exists()
