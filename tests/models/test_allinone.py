"""All-in-one model: parameter counts, temporal roll, patch order, sizes, heads (tiny configs)."""

from __future__ import annotations

import pytest
import torch

import leanvl
from leanvl.config import ConfigError, load_config
from leanvl.layers.temporal_roll import TemporalRoll, temporal_roll
from leanvl.models.allinone import AllInOne, AllInOneConfig

# Measured on the official classes (spec §7.1).
BACKBONE = {"allinone_ti": 11_431_104, "allinone_s": 33_553_536, "allinone_b": 109_867_776}
PRETRAINING = {"allinone_ti": 17_359_676, "allinone_s": 45_453_884, "allinone_b": 133_932_860}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(BACKBONE))
def test_full_preset_parameter_counts_match_official(name):
    with torch.device("meta"):
        backbone = leanvl.create_model(name, mlm_head=False, itm_head=False)
        pretraining = leanvl.create_model(name)
    assert n_params(backbone) == BACKBONE[name]
    assert n_params(pretraining) == PRETRAINING[name]


def test_downstream_head_parameter_counts_b():
    with torch.device("meta"):
        base = n_params(leanvl.create_model("allinone_b"))
        heads = {
            "openend": n_params(leanvl.create_model("allinone_b", num_answers=1501)),
            "vqav2": n_params(leanvl.create_model("allinone_b", qa_head="vqav2", num_answers=3129)),
            "vtc": n_params(leanvl.create_model("allinone_b", vtc_dim=512)),
            "mc_vqa": n_params(leanvl.create_model("allinone_b", mc_vqa_head=True)),
        }
    assert {k: v - base for k, v in heads.items()} == {
        "openend": 873_949,
        "vqav2": 5_993_529,
        "vtc": 787_456,
        "mc_vqa": 197_633,
    }


def test_temporal_roll_moves_the_official_positions():
    b, t, text, visual = 2, 3, 4, 17  # fold = 17 // 8 = 2
    frame = torch.arange(t, dtype=torch.float32).repeat(b)  # value = source frame
    x = frame[:, None, None].expand(b * t, text + visual, 1).clone()
    out = temporal_roll(x, t, visual_start=text, fold_div=8).view(b, t, -1)
    for f in range(t):
        row = out[0, f]
        assert torch.all(row[: text + 1] == f)  # text and visual CLS stay
        assert torch.all(row[text + 1 : text + 3] == (f - 1) % t)  # from the previous frame
        assert torch.all(row[text + 3 : -2] == f)
        assert torch.all(row[-2:] == (f + 1) % t)  # from the next frame
    assert torch.equal(TemporalRoll(8)(x, t, text), temporal_roll(x, t, visual_start=text))
    assert torch.equal(temporal_roll(x[:2], 1, visual_start=text), x[:2])  # T=1: identity


def tiny(**overrides) -> AllInOne:
    torch.manual_seed(0)
    model = leanvl.create_model("allinone_tiny", **overrides).eval()
    with torch.no_grad():  # larger-than-default weights so that mistakes show in the outputs
        for p in model.parameters():
            p.normal_(0, 0.5) if p.ndim > 1 else p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(model: AllInOne, b: int = 2, t: int | None = None, seq_len: int = 12):
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    t = t or cfg.num_frames
    video = torch.randn(b, t, 3, cfg.image_size, cfg.image_size, generator=g)
    ids = torch.randint(104, 1000, (b, seq_len), generator=g)
    mask = torch.ones(b, seq_len, dtype=torch.long)
    mask[0, seq_len // 2 :] = 0
    ids[mask == 0] = 0
    return video, ids, mask


@torch.no_grad()
def test_roll_makes_frame_order_matter_and_off_switch_removes_it():
    video, ids, mask = inputs(tiny())
    reversed_video = video.flip(1)
    rolled = tiny()
    assert (
        rolled(video, ids, mask).cls_feats - rolled(reversed_video, ids, mask).cls_feats
    ).abs().max() > 1e-3
    plain = tiny(temporal_roll=False)
    with torch.no_grad():
        plain.transformer.temporal_embed.zero_()
    a, b = plain(video, ids, mask), plain(reversed_video, ids, mask)
    torch.testing.assert_close(a.cls_feats, b.cls_feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.video_feats, b.video_feats, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_patch_order_only_matters_through_the_roll():
    model, plain = tiny(), tiny(temporal_roll=False)
    video, ids, mask = inputs(model)
    p = model.config.num_patches
    order = torch.stack(
        [torch.randperm(p, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    )
    # without the roll, attention is permutation-equivariant: only the order of tokens changes
    raster, shuffled = plain(video, ids, mask), plain(video, ids, mask, patch_order=order)
    torch.testing.assert_close(raster.cls_feats, shuffled.cls_feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        raster.video_feats[:, 0], shuffled.video_feats[:, 0], atol=1e-5, rtol=1e-5
    )
    inverse = order.argsort(1).view(2, 3, p)[:, 0]  # frame-0 order of each sample
    plain_tokens = plain(
        video, ids, mask, patch_order=order.view(2, 3, p)[:, :1].expand(-1, 3, -1).reshape(6, p)
    )
    restored = plain_tokens.video_feats[:, 1:].gather(1, inverse[..., None].expand(-1, -1, 64))
    torch.testing.assert_close(restored, raster.video_feats[:, 1:], atol=1e-5, rtol=1e-5)
    # with the roll, which patches travel to the neighbouring frames changes the result
    diff = model(video, ids, mask).cls_feats - model(video, ids, mask, patch_order=order).cls_feats
    assert diff.abs().max() > 1e-3


@torch.no_grad()
def test_random_patch_order_is_reproducible_with_a_generator():
    model = tiny(patch_order="random")
    video, ids, mask = inputs(model)
    a = model(video, ids, mask, generator=torch.Generator().manual_seed(7)).cls_feats
    b = model(video, ids, mask, generator=torch.Generator().manual_seed(7)).cls_feats
    c = model(video, ids, mask, generator=torch.Generator().manual_seed(8)).cls_feats
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4
    # the official draw: one multinomial over uniform weights per frame, frame after frame
    g = torch.Generator().manual_seed(7)
    p = model.config.num_patches
    order = torch.stack([torch.multinomial(torch.ones(p), p, generator=g) for _ in range(6)])
    assert torch.equal(model(video, ids, mask, patch_order=order).cls_feats, a)


def test_bad_patch_order_is_rejected():
    model = tiny()
    video, ids, mask = inputs(model)
    p = model.config.num_patches
    with pytest.raises(ValueError, match="patch_order"):
        model(video, ids, mask, patch_order=torch.zeros(6, p, dtype=torch.long))
    with pytest.raises(ValueError, match="patch_order"):
        model(video, ids, mask, patch_order=torch.arange(p).expand(5, -1))


@torch.no_grad()
def test_any_frame_count_and_text_length_from_the_config():
    model = tiny(num_frames=6, max_text_len=64)
    video, ids, mask = inputs(model, t=6, seq_len=64)
    out = model(video, ids, mask)
    assert out.text_feats.shape == (2, 64, 64) and out.video_feats.shape == (2, 17, 64)
    # fewer frames use the first temporal-embedding rows
    short = model(video[:, :4], ids[:, :20], mask[:, :20])
    assert short.cls_feats.isfinite().all()
    with pytest.raises(ValueError, match="num_frames=6"):
        model(torch.cat([video, video[:, :1]], 1), ids, mask)
    with pytest.raises(ValueError, match="max_text_len=64"):
        model(video, torch.zeros(2, 65, dtype=torch.long), torch.ones(2, 65))
    with pytest.raises(ValueError, match="image_size=64"):
        model(video[..., :32, :32], ids, mask)


@torch.no_grad()
def test_padding_is_masked_as_keys():
    model = tiny()
    video, ids, mask = inputs(model)
    changed = ids.clone()
    changed[0, -1] = 555  # a padded position of sample 0
    a, b = model(video, ids, mask), model(video, changed, mask)
    torch.testing.assert_close(a.cls_feats, b.cls_feats, atol=0, rtol=0)
    torch.testing.assert_close(a.video_feats, b.video_feats, atol=0, rtol=0)


@torch.no_grad()
def test_text_only_pass_equals_the_official_repeated_copies():
    model = tiny()
    video, ids, mask = inputs(model)
    t = model.config.num_frames
    x = model.embed_text(ids).repeat_interleave(t, 0)
    m = mask.bool().repeat_interleave(t, 0)[:, None, None, :]
    official = model.txt_proj(model.transformer.encode(x, m, t, None)[:, 0])
    torch.testing.assert_close(model.encode_text(ids, mask), official, atol=1e-5, rtol=1e-5)
    assert model.encode_text(ids, mask, project=False, all_tokens=True).shape == (2, 12, 64)
    video_emb = model.encode_video(video)
    assert video_emb.shape == (2, 32)
    with pytest.raises(ValueError, match="vtc_dim=0"):
        tiny(vtc_dim=0).encode_video(video)


@torch.no_grad()
def test_heads_and_multiple_choice():
    model = tiny()
    video, ids, mask = inputs(model)
    out = model(video, ids, mask)
    itm = model.itm_logits(out.cls_feats)
    torch.testing.assert_close(model.rank_scores(out.cls_feats), itm[:, 1])
    assert model.qa_logits(out.cls_feats).shape == (2, 16)
    assert model.mlm_logits(out.text_feats).shape == (2, 12, 30522)
    # multiple choice: K options against one video == K separate joint passes
    options = torch.stack([ids, ids.roll(1, 1), ids.flip(1)], dim=1)  # (B, 3, L)
    option_mask = mask[:, None].expand(-1, 3, -1)
    scores = model.mc_scores(video, options, option_mask)
    for k in range(3):
        ref = model.rank_scores(model(video, options[:, k], option_mask[:, k]).cls_feats)
        torch.testing.assert_close(scores[:, k], ref, atol=1e-5, rtol=1e-5)
    mc_vqa = model.mc_scores(video, options, option_mask, head="mc_vqa")
    ref = model.mc_vqa_scores(model(video, options[:, 2], option_mask[:, 2]).cls_feats)
    torch.testing.assert_close(mc_vqa[:, 2], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="num_answers=0"):
        tiny(num_answers=0).qa_logits(out.cls_feats)


def test_vqav2_head_layout_names():
    keys = set(tiny(qa_head="vqav2", num_answers=7).state_dict())
    assert {"vqa_classifier.0.weight", "vqa_classifier.1.weight", "vqa_classifier.3.weight"} <= keys
    assert "vqa_classifier.4.weight" in set(tiny().state_dict())


def test_distilled_has_dist_token_and_ignores_temporal_embedding():
    model = tiny(distilled=True)
    video, ids, mask = inputs(model)
    assert model.transformer.pos_embed.shape[1] == 18
    with torch.no_grad():
        a = model(video, ids, mask).cls_feats
        model.transformer.temporal_embed.add_(1.0)
        b = model(video, ids, mask).cls_feats
    assert torch.equal(a, b)


def test_save_load_roundtrip_and_training_step(tmp_path):
    model = tiny()
    video, ids, mask = inputs(model)
    leanvl.save_model(model, tmp_path / "ckpt")
    loaded = leanvl.load(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(model(video, ids, mask).cls_feats, loaded(video, ids, mask).cls_feats)
    loaded.train()
    out = loaded(video, ids, mask)
    loss = (
        loaded.itm_logits(out.cls_feats).logsumexp(-1).mean()
        + loaded.mlm_logits(out.text_feats).mean()
    )
    loss.backward()
    no_grad = {n.split(".")[0] for n, p in loaded.named_parameters() if p.grad is None}
    assert no_grad == {"txt_proj", "vid_proj", "vqa_classifier", "mc_vqa_classifier"}
    assert loaded.transformer.patch_embed.proj.weight.grad.abs().sum() > 0


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"AllInOneConfig.patch_order='zigzag'"):
        AllInOneConfig(patch_order="zigzag")
    with pytest.raises(ValueError, match=r"AllInOneConfig.hidden_size=100"):
        AllInOneConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ConfigError, match="num_frame"):
        load_config(AllInOneConfig, {"num_frame": 4})
    assert load_config(AllInOneConfig, overrides=["num_frames=8"]).num_frames == 8
