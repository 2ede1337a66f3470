"""SViTT-Ego presets: the SViTT-B architecture, a tiny variant that trains with EgoNCE."""

import dataclasses

import pytest
import torch

import leanvl
from leanvl.losses import ego_nce, info_nce, tag_multi_hot
from leanvl.models.svitt import SViTT, SViTTConfig


def test_svitt_ego_is_svitt_base_architecture():
    with torch.device("meta"):
        model = leanvl.create_model("svitt_ego")
    assert isinstance(model, SViTT) and model.family == "svitt"
    assert dataclasses.asdict(model.config) == dataclasses.asdict(SViTTConfig())
    # spec svitt.md §11: the 4-frame pretraining model has 203,394,653 parameters
    assert sum(p.numel() for p in model.parameters()) == 203_394_653
    assert "svitt_ego" in leanvl.list_models("ego")


def test_svitt_ego_tiny_config_and_overrides():
    model = leanvl.create_model("svitt_ego_tiny", token_keep_rate=0.5)
    cfg = model.config
    assert (cfg.image_size, cfg.patch_size, cfg.num_frames, cfg.attn_block_size) == (64, 8, 4, 16)
    assert cfg.token_keep_rate == 0.5 and cfg.sparse_random == 3
    out = model.eval().encode_video(torch.zeros(1, 4, 3, 64, 64))
    # 4 frames x 8 x 8 patches = 256 tokens; keep 0.5 at layers 1, 2: 256 -> 128 -> 64 (+ CLS)
    assert out.tokens.shape[1] == 65


def _batch(model, generator):
    video = torch.randn(6, 4, 3, 64, 64, generator=generator)
    ids = torch.randint(1000, 2000, (6, 8), generator=generator)
    ids[:, 0] = 101
    return video, ids, torch.ones_like(ids)


def _ego_loss(model, video, ids, mask, verb_vec, noun_vec, generator):
    pooled = model.encode_video(video, generator=generator).pooled
    v, t = model.itc_features(pooled, model.encode_text(ids, mask).cls)
    return ego_nce(t @ v.t(), verb_vec, noun_vec, temperature=0.05)


def test_tiny_model_trains_with_ego_nce():
    torch.manual_seed(0)
    model = leanvl.create_model("svitt_ego_tiny", drop_path_rate=0.0, text_dropout=0.0)
    g = torch.Generator().manual_seed(0)
    video, ids, mask = _batch(model, g)
    verb_vec, noun_vec = tag_multi_hot(
        [[0], [0], [1], [1], [2], [0]], [[0], [0], [1], [2], [2], [3]], 3, 4
    )

    def loss_fn():
        blocks = torch.Generator().manual_seed(1)  # same sparse pattern in every pass
        return _ego_loss(model, video, ids, mask, verb_vec, noun_vec, blocks)

    before = loss_fn()
    before.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in (
        "vision_proj.weight",
        "text_proj.weight",
        "vision.patch_embed.weight",
        "text_embeddings.word.weight",
    ):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    # the text fusion layers and heads play no part in the dual-encoder loss
    assert grads["itm_head.weight"] is None
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 1e-4 * p.grad
        after = loss_fn()
    assert after.item() < before.item() - 0.1  # 3.995 -> 3.547 at seed 0


def test_ego_nce_and_info_nce_on_model_features_relate():
    # with tags that give no off-diagonal positive, EgoNCE = 2 x InfoNCE on the same features
    torch.manual_seed(0)
    model = leanvl.create_model("svitt_ego_tiny").eval()
    g = torch.Generator().manual_seed(3)
    video, ids, mask = _batch(model, g)
    verb_vec, noun_vec = tag_multi_hot([[i] for i in range(6)], [[0]] * 6, 6, 1)
    with torch.no_grad():
        pooled = model.encode_video(video, generator=torch.Generator().manual_seed(0)).pooled
        v, t = model.itc_features(pooled, model.encode_text(ids, mask).cls)
    ego = ego_nce(t @ v.t(), verb_vec, noun_vec, 0.05)
    assert ego.item() == pytest.approx(2 * info_nce(t @ v.t(), 0.05).item(), rel=1e-5)
