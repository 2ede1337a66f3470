"""``leanvl convert svitt``: key mapping, dropped keys, layouts, resampling, CLI exit codes."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

import leanvl
from leanvl.cli import main
from leanvl.convert.svitt import convert_state_dict, convert_svitt_checkpoint, pretrain_to_vqa
from leanvl.layers.rel_pos_3d import resample_temporal_table
from leanvl.models.svitt import SViTTVQA
from tests.parity.golden import golden_fixtures, load_manifest

FIXTURE = next(iter(golden_fixtures("JerryYLi/svitt")), None)
pytestmark = pytest.mark.skipif(FIXTURE is None, reason="no SViTT golden fixture")
TABLE = "vision_encoder.encoder.layer.{}.attention.attention.relative_position_bias.relative_position_bias_table"  # noqa: E501


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "weights.safetensors")


@pytest.fixture(scope="module")
def config() -> dict:
    cfg = load_manifest(FIXTURE)["config"]
    vision = cfg["vision"]
    return {
        "image_res": cfg["image_res"],
        "video_input": {"num_frames": cfg["num_frames"]},
        "vision_encoder_args": {
            "token_keep_rate": vision["token_keep_rate"],
            "token_drop_loc": vision["token_drop_loc"],
            "sparse_local_attn": vision["sparse_local_attn"],
            "sparse_random_attn": vision["sparse_random_attn"],
            "attn_block_size": vision["attn_block_size"],
        },
    }


def test_every_key_is_mapped_or_dropped_with_a_reason(official, config) -> None:
    conv = convert_state_dict(official, config)
    layers = sum(k.endswith("relative_position_index") for k in official)
    assert layers == conv.config.vision_layers
    assert sorted(conv.dropped.values()) == sorted(
        ["recomputable index buffer"] * (layers + 1)
        + ["tied to the MLM bias", "tied to the word embeddings"]
    )
    assert len(conv.state_dict) + len(conv.dropped) == len(official)
    assert torch.equal(conv.state_dict["vision.blocks.0.rel_pos.table"], official[TABLE.format(0)])
    assert conv.config.token_drop_layers == (1, 2) and conv.config.sparse_random == 3
    assert conv.config.image_size == 112 and conv.config.num_frames == 4


def test_config_is_inferred_without_the_checkpoint_config(official) -> None:
    conv = convert_state_dict(official)  # grid and frames from the table + index buffer
    assert (conv.config.image_size, conv.config.num_frames) == (112, 4)
    assert conv.config.sparse_random is None and conv.config.token_keep_rate == 1.0
    bare = {k: v for k, v in official.items() if not k.endswith("relative_position_index")}
    with pytest.raises(ValueError, match="fits no patch grid"):
        convert_state_dict(bare)  # 224/16 assumed: the 7x7 table does not fit
    assert convert_state_dict(bare, overrides={"image_size": 112}).config.num_frames == 4


def test_retrieval_layout_converts_without_mlm_head(official, config) -> None:
    retrieval = {
        k.replace("text_encoder.bert.", "text_encoder."): v
        for k, v in official.items()
        if not k.startswith("text_encoder.cls.")
    }
    ret_model, conv = convert_svitt_checkpoint({"model": retrieval, "config": config})
    assert conv.config.mlm_head is False and ret_model.mlm_head is None
    pre_model, _ = convert_svitt_checkpoint({"model": official, "config": config})
    ids = torch.tensor([[101, 5, 6, 7]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        a = ret_model.encode_text(ids, mask).hidden
        b = pre_model.encode_text(ids, mask).hidden
    assert torch.equal(a, b)


def test_untied_decoder_and_unknown_keys_are_refused(official) -> None:
    untied = dict(official)
    untied["text_encoder.cls.predictions.decoder.bias"] = (
        untied["text_encoder.cls.predictions.decoder.bias"] + 1
    )
    with pytest.raises(ValueError, match="decoder.bias' is not tied"):
        convert_state_dict(untied)
    extra = dict(official, **{"text_encoder.bert.pooler.dense.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="1 unrecognised keys: \\['text_encoder.bert.pooler"):
        convert_state_dict(extra)


def test_blocks_without_layer_scale(official, config) -> None:
    no_scale = {k: v for k, v in official.items() if not k.endswith(("lambda_1", "lambda_2"))}
    model, conv = convert_svitt_checkpoint({"model": no_scale, "config": config})
    assert conv.config.layer_scale_init == 0.0 and model.vision.blocks[0].gamma_attn is None


def test_resampling_to_more_frames(official, config) -> None:
    model, conv = convert_svitt_checkpoint({"model": official, "config": config}, num_frames=8)
    assert conv.resampled == (4, 8) and model.config.num_frames == 8
    expected = resample_temporal_table(official[TABLE.format(1)], 4, 8, 7, 7)
    assert torch.equal(model.vision.blocks[1].rel_pos.table, expected)
    assert expected.shape == ((2 * 8 - 1) * 13 * 13 + 3, 3)
    video = torch.zeros(1, 8, 3, 112, 112)
    with torch.no_grad():
        out = model.encode_video(video, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape[1] == 1 + 193  # 8 x 49 = 392 -> ceil(274.4) = 275 -> ceil(192.5)


def _run(*argv: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    return info.value.code or 0


def test_cli_converts_an_official_pth(official, config, tmp_path: Path, capsys) -> None:
    src = tmp_path / "ckpt_best.pth"
    torch.save({"model": official, "config": OmegaConf.create(config), "epoch": 3}, src)
    assert _run("convert", "svitt", str(src), str(tmp_path / "out"), "--set", "text_heads=3") == 0
    printed = capsys.readouterr().out
    assert "dropped 5 keys: recomputable index buffer" in printed
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["family"] == "svitt" and meta["config"]["text_heads"] == 3
    assert len(meta["extra"]["conversion"]["dropped"]) == 7
    model = leanvl.load(tmp_path / "out")
    assert torch.equal(model.temp, official["temp"])


def test_cli_errors(official, tmp_path: Path, capsys) -> None:
    src = tmp_path / "ckpt.pth"
    torch.save({"model": official}, src)
    assert _run("convert", "svitt", str(src), str(tmp_path / "a"), "--set", "text_hedas=3") == 2
    assert "text_hedas" in capsys.readouterr().err
    not_svitt = tmp_path / "other.pth"
    torch.save({"model": {"w": torch.zeros(1)}}, not_svitt)
    assert _run("convert", "svitt", str(not_svitt), str(tmp_path / "b")) == 1
    assert "not an official SViTT checkpoint" in capsys.readouterr().err
    # a pickle naming a callable is refused before anything runs
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"model": {}, "config": print}))
    assert _run("convert", "svitt", str(evil), str(tmp_path / "c")) == 1
    assert "builtins" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_vqa_from_pretraining_and_from_a_vqa_checkpoint(official, config, tmp_path) -> None:
    vqa, conv = convert_svitt_checkpoint({"model": official, "config": config}, task="vqa")
    assert isinstance(vqa, SViTTVQA) and conv.config.decoder_layers == 3  # fusion layers 2..4
    fusion = "text_encoder.bert.encoder.layer.{}.crossattention.self.query.weight"
    for i in range(3):
        layer = vqa.decoder.layers[i]
        assert torch.equal(layer.cross_attn.query.weight, official[fusion.format(2 + i)])
    word = official["text_encoder.bert.embeddings.word_embeddings.weight"]
    assert torch.equal(vqa.answer_embeddings.word.weight, word)
    assert vqa.vision.pool_norm is None
    # a VQA checkpoint in the official layout converts back to the same weights
    again, conv2 = convert_svitt_checkpoint({"model": pretrain_to_vqa(official), "config": config})
    assert isinstance(again, SViTTVQA)
    assert "text_decoder.cls.predictions.decoder.weight" in conv2.dropped
    for key, value in vqa.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    leanvl.save_model(again, tmp_path / "vqa")
    assert isinstance(leanvl.load(tmp_path / "vqa"), SViTTVQA)
