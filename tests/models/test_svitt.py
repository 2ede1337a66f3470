"""SViTT model: sizes, sparsity switches, determinism, losses and save/load (tiny configs)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import leanvl
from leanvl.models.svitt import (
    SViTT,
    SViTTConfig,
    SViTTVQA,
    TextOutput,
    itc_loss,
    mlm_mask,
    retrieval_scores,
    split_clips,
    svitt_base,
    svitt_tiny,
)


def _video(b: int = 2, t: int = 4, size: int = 112, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _text(b: int = 2, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000, 2000, (b, length), generator=torch.Generator().manual_seed(1))
    ids[:, 0] = 101
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, length // 2 :] = 0
    return ids * mask, mask


@pytest.fixture(scope="module")
def tiny() -> SViTT:
    torch.manual_seed(0)
    return svitt_tiny(vocab_size=2000).eval()


@pytest.mark.parametrize(
    ("frames", "total", "vision"),
    [
        (1, 202_764_797, 85_761_984),
        (4, 203_394_653, 86_391_840),
        (8, 204_234_461, 87_231_648),
        (16, 205_914_077, 88_911_264),
    ],
)
def test_svitt_base_parameter_counts_match_the_official_model(frames, total, vision) -> None:
    with torch.device("meta"):
        model = svitt_base(num_frames=frames)
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(p.numel() for p in model.vision.parameters()) == vision


def test_retrieval_variant_has_no_mlm_head() -> None:
    with torch.device("meta"):
        model = svitt_base(mlm_head=False)
    assert sum(p.numel() for p in model.parameters()) == 202_772_003
    assert "svitt_base" in leanvl.list_models() and "svitt_tiny" in leanvl.list_models()


def test_token_counts_follow_ceil(tiny: SViTT) -> None:
    with torch.no_grad():
        out = tiny.encode_video(_video())
    # 4 frames x 7x7 = 196 -> ceil(0.7*196)=138 -> ceil(0.7*138)=97
    assert [k.shape[1] for k in out.kept_token_idx] == [138, 97]
    assert out.tokens.shape == (2, 98, 96)
    for kept in out.kept_token_idx:
        assert (kept.diff(dim=1) > 0).all() and kept.min() >= 0 and kept.max() < 196
    # the second drop selects among the survivors of the first
    first, second = out.kept_token_idx
    assert all(set(b.tolist()) <= set(a.tolist()) for a, b in zip(first, second, strict=True))
    assert [t.shape[0] for t in out.random_blocks] == [14, 14, 10, 7]


def test_sparsity_off_is_the_dense_baseline(tiny: SViTT) -> None:
    video = _video()
    dense = SViTT(dataclasses.replace(tiny.config, sparse_random=None, token_keep_rate=1.0))
    dense.load_state_dict(tiny.state_dict())
    forced = SViTT(dataclasses.replace(tiny.config, attention_backend="dense", token_keep_rate=1.0))
    forced.load_state_dict(tiny.state_dict())
    # block size = all tokens, no random blocks: the gather backend computes dense attention
    one_block = SViTT(
        dataclasses.replace(tiny.config, attn_block_size=196, sparse_random=0, token_keep_rate=1.0)
    )
    one_block.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        ref = dense.eval().encode_video(video)
        assert ref.kept_token_idx == [] and ref.random_blocks == []
        torch.testing.assert_close(forced.eval().encode_video(video).tokens, ref.tokens)
        out = one_block.eval().encode_video(video)
        torch.testing.assert_close(out.tokens, ref.tokens, atol=1e-5, rtol=1e-5)
        sparse = tiny.encode_video(video, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(sparse.pooled, ref.pooled, atol=1e-3)


def test_random_blocks_are_seeded_and_injectable(tiny: SViTT) -> None:
    video = _video(b=1)
    with torch.no_grad():
        a = tiny.encode_video(video, generator=torch.Generator().manual_seed(3))
        b = tiny.encode_video(video, generator=torch.Generator().manual_seed(3))
        c = tiny.encode_video(video, generator=torch.Generator().manual_seed(4))
        d = tiny.encode_video(video, random_blocks=a.random_blocks)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.tokens, d.tokens)
    assert not torch.equal(a.tokens, c.tokens)
    with pytest.raises(ValueError, match="random block table of shape"):
        tiny.encode_video(video, random_blocks=[t[:, :2] for t in a.random_blocks])


def test_inputs_are_checked_where_they_enter(tiny: SViTT) -> None:
    with pytest.raises(ValueError, match="image_size=112"):
        tiny.encode_video(_video(size=96))
    with pytest.raises(ValueError, match="num_frames=4"):
        tiny.encode_video(_video(t=5))
    with pytest.raises(ValueError, match="attention_backend='sparse'"):
        SViTTConfig(attention_backend="sparse")
    with pytest.raises(ValueError, match="token_drop_layers"):
        SViTTConfig(token_drop_layers=(12,))
    with torch.no_grad():  # fewer frames than the table covers is fine (e.g. 1-frame images)
        assert tiny.encode_video(_video(t=1)).tokens.shape == (2, 1 + 25, 96)  # 49 -> 35 -> 25


def test_itc_loss_values() -> None:
    sim = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert itc_loss(sim, torch.arange(2)).item() == pytest.approx(expected, rel=1e-6)
    # both samples from the same video: every entry is a positive with weight 1/2
    assert itc_loss(sim, torch.zeros(2)).item() == pytest.approx(math.log(math.exp(2) + 1) - 1)


def test_temperature_is_clamped(tiny: SViTT) -> None:
    model = svitt_tiny(vocab_size=2000, temp_init=0.9)
    feats = torch.nn.functional.normalize(torch.randn(2, 64), dim=-1)
    sim = model.itc_similarity(feats, feats)
    assert model.temp.item() == pytest.approx(0.5)
    torch.testing.assert_close(sim, feats @ feats.t() / 0.5)


def test_pretraining_losses_backpropagate_through_the_sparse_path() -> None:
    torch.manual_seed(0)
    model = svitt_tiny(vocab_size=2000).train()
    ids, mask = _text()
    video = model.encode_video(_video())
    text = model.encode_text(ids, mask)
    sim = model.itc_similarity(*model.itc_features(video.pooled, text.cls))
    idx = torch.arange(2)
    itm, neg_video, neg_text = model.itm_loss(sim, text, video.tokens, idx)
    assert neg_video.tolist() == [1, 0] and neg_text.tolist() == [1, 0]  # the only negatives
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    masked = ids.clone()
    masked[:, 2] = 103
    logits = model.mlm_logits(masked, mask, video.tokens)
    mlm = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
    loss = itc_loss(sim, idx) + itm + mlm
    loss.backward()
    assert model.vision.blocks[0].rel_pos.table.grad.abs().sum() > 0
    assert model.mlm_head.dense.weight.grad.abs().sum() > 0
    assert model.text_embeddings.word.weight.grad[ids[0, 2]].abs().sum() > 0


def test_text_guided_pruning_keeps_the_top_text_cls_tokens(tiny: SViTT) -> None:
    pruned = SViTT(dataclasses.replace(tiny.config, xmodal_keep_rate=0.5, xmodal_drop_layers=(3,)))
    pruned.load_state_dict(tiny.state_dict())
    ids, mask = _text()
    with torch.no_grad():
        video = tiny.encode_video(_video(), generator=torch.Generator().manual_seed(0))
        text = pruned.encode_text(ids, mask)
        fused = pruned.eval().fuse(text, video.tokens)
        full = pruned.fuse(text, video.tokens, prune=False)
    assert fused.kept_video[0].shape == (2, 49)  # ceil(0.5 * 97)
    assert full.kept_video == []
    # layer 3 output is unchanged by pruning after it; layer 4 differs
    assert not torch.allclose(fused.hidden, full.hidden, atol=1e-4)


def test_save_and_load_roundtrip(tiny: SViTT, tmp_path) -> None:
    leanvl.save_model(tiny, tmp_path / "ckpt")
    again = leanvl.load(tmp_path / "ckpt")
    assert again.config == tiny.config
    video = _video(b=1)
    with torch.no_grad():
        a = tiny.encode_video(video, generator=torch.Generator().manual_seed(1))
        b = again.encode_video(video, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.tokens, b.tokens)


def test_split_clips_segments_or_interleaves() -> None:
    frames = torch.arange(6).reshape(1, 6)
    assert split_clips(frames, 2)[:, 0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert split_clips(frames, 2, interleaved=True)[:, 0].tolist() == [[0, 2, 4], [1, 3, 5]]
    with pytest.raises(ValueError, match="6 test frames do not split into 4 clips"):
        split_clips(frames, 4)


def test_retrieval_scores_rerank_the_itc_top_k(tiny: SViTT) -> None:
    video = _video(b=2, t=8)  # 2 clips of 4 frames
    ids, mask = _text(b=3)
    scores = retrieval_scores(
        tiny, video, ids, mask, k_test=2, generator=torch.Generator().manual_seed(0)
    )
    # the same computation by hand: clips drawn in order from the same seed
    gen = torch.Generator().manual_seed(0)
    outs = [tiny.encode_video(clip, generator=gen) for clip in split_clips(video, 2)]
    with torch.no_grad():
        text = tiny.encode_text(ids, mask)
        feats = [tiny.itc_features(o.pooled, text.cls) for o in outs]
        itc = (feats[0][0] @ feats[0][1].t() + feats[1][0] @ feats[1][1].t()) / 2
        torch.testing.assert_close(scores.itc, itc)
        for i in range(2):
            top = itc[i].topk(2).indices
            assert (scores.itm_v2t[i] == -100).sum() == 1
            assert (scores.itm_v2t[i, top] != -100).all()
            for j in top.tolist():
                single = TextOutput(text.hidden[[j]], text.cls[[j]], mask[[j]])
                per_clip = torch.stack([tiny.itm_logits(single, o.tokens[[i]])[0, 1] for o in outs])
                torch.testing.assert_close(scores.itm_v2t[i, j], per_clip.logsumexp(0))
                if i in itc[:, j].topk(2).indices.tolist():
                    torch.testing.assert_close(scores.itm_t2v[j, i], per_clip.logsumexp(0))


def test_mlm_mask_follows_the_official_rates() -> None:
    ids = torch.randint(1000, 2000, (400, 50), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, 40:] = 101, 0
    masked, labels = mlm_mask(ids, 2000, generator=torch.Generator().manual_seed(1))
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 40:].any()  # never [CLS] / [PAD]
    assert torch.equal(labels[chosen], ids[chosen])
    assert chosen[:, 1:40].float().mean().item() == pytest.approx(0.5, abs=0.01)
    as_mask = (masked == 103) & chosen
    assert as_mask.sum().item() / chosen.sum().item() == pytest.approx(0.8, abs=0.01)
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_forward_returns_the_three_pretraining_losses() -> None:
    torch.manual_seed(0)
    model = svitt_tiny(vocab_size=2000).train()
    ids, mask = _text(b=3)
    mlm_ids, labels = mlm_mask(ids, 2000, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    losses = model(_video(b=3), ids, mask, torch.tensor([0, 0, 1]), mlm_ids, labels, gen)
    assert set(losses) == {"itc", "itm", "mlm", "loss"}
    # random init: MLM near log(vocab), ITM near log(2)
    assert losses["mlm"].item() == pytest.approx(math.log(2000), rel=0.1)
    assert losses["itm"].item() == pytest.approx(math.log(2), rel=0.3)
    total = losses["itc"] + losses["itm"] + losses["mlm"]
    torch.testing.assert_close(losses["loss"], total)
    losses["loss"].backward()
    assert model.temp.grad is not None


@pytest.fixture(scope="module")
def tiny_vqa(tiny: SViTT) -> SViTTVQA:
    torch.manual_seed(1)
    return SViTTVQA(tiny.config).eval()


def _answers() -> tuple[torch.Tensor, torch.Tensor]:
    # [CLS] answer [SEP], padded: 4 candidate answers of 1-3 word pieces
    ids = torch.tensor(
        [[101, 1500, 102, 0, 0], [101, 1600, 1601, 102, 0], [101, 1700, 102, 0, 0]]
        + [[101, 1500, 1800, 1801, 102]]
    )
    return ids, (ids != 0).long()


def test_vqa_decoder_is_causal(tiny_vqa: SViTTVQA) -> None:
    states = torch.randn(1, 6, 96, generator=torch.Generator().manual_seed(0))
    ids, mask = _answers()
    other = ids[3:].clone()
    other[0, 3] = 1900
    with torch.no_grad():
        a = tiny_vqa.answer_logits(ids[3:], mask[3:], states, torch.ones(1, 6))
        b = tiny_vqa.answer_logits(other, mask[3:], states, torch.ones(1, 6))
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_vqa_ranking_matches_brute_force_scoring(tiny_vqa: SViTTVQA) -> None:
    gen = torch.Generator().manual_seed(0)
    states = torch.randn(2, 6, 96, generator=gen)
    states_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    ids, mask = _answers()
    order, probs = tiny_vqa.rank_answers(states, states_mask, ids, mask, k=4)
    with torch.no_grad():
        for q in range(2):
            scores = []
            for a in range(4):
                n = int(mask[a].sum())
                logits = tiny_vqa.answer_logits(
                    ids[a : a + 1, :n],
                    mask[a : a + 1, :n],
                    states[q : q + 1],
                    states_mask[q : q + 1],
                )  # noqa: E501
                logp = logits[0].log_softmax(-1)
                seq = sum(logp[t, ids[a, t + 1]] for t in range(n - 1))
                scores.append(logp[0, ids[a, 1]] + seq)  # first token counted twice (official)
            expected = torch.stack(scores).softmax(0)
            torch.testing.assert_close(probs[q], expected[order[q]], atol=1e-5, rtol=1e-4)
            assert torch.equal(order[q], expected.argsort(descending=True))


def test_vqa_loss_weights_answers_per_question(tiny_vqa: SViTTVQA) -> None:
    states = torch.randn(2, 6, 96, generator=torch.Generator().manual_seed(2))
    smask = torch.ones(2, 6)
    ids, mask = _answers()
    weights = torch.tensor([0.5, 0.5, 1.0, 1.0])
    counts = torch.tensor([2, 2])
    with torch.no_grad():
        loss = tiny_vqa.loss(states, smask, ids, mask, weights, counts)
        nll = torch.stack(
            [
                tiny_vqa.answer_nll(ids[[a]], mask[[a]], states[[a // 2]], smask[[a // 2]])[0]
                for a in range(4)
            ]
        )
    torch.testing.assert_close(loss, (weights * nll).sum() / 2)
    assert nll.min() > 0


def test_vqa_question_encoder_is_the_unpruned_fusion_encoder(tiny: SViTT) -> None:
    pruning = SViTT(dataclasses.replace(tiny.config, xmodal_keep_rate=0.5))
    pruning.load_state_dict(tiny.state_dict())
    vqa = SViTTVQA(pruning.config).eval()
    shared = {k: v for k, v in pruning.state_dict().items() if k in vqa.state_dict()}
    missing = vqa.load_state_dict(shared, strict=False).missing_keys
    assert all(k.startswith(("answer_", "decoder.")) for k in missing)
    ids, mask = _text()
    video = _video()
    with torch.no_grad():
        states = vqa.encode_question(video, ids, mask, torch.Generator().manual_seed(0))
        tokens = pruning.eval().encode_video(video, generator=torch.Generator().manual_seed(0))
        fused = pruning.fuse(pruning.encode_text(ids, mask), tokens.tokens, prune=False)
    torch.testing.assert_close(states, fused.hidden)
