"""Video-Panda model: presets, STAB token budget, chunk independence, splicing, generation."""

from __future__ import annotations

import math

import pytest
import torch

import leanvl
from leanvl.config import ConfigError
from leanvl.models.videopanda import VideoPanda, VideoPandaConfig


def _reinit(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw every weight at unit scale so no path is near-identity and argmax is stable."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p.shape[1] if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            if "norm" in name and p.dim() == 1:
                p.add_(1.0)
    return model.eval()


def _frames(config: VideoPandaConfig, videos: int, seed: int = 0, band: int | None = None):
    """Random normalized frames with a full mask, or a letterbox band of ``band`` rows."""
    gen = torch.Generator().manual_seed(seed)
    s = config.image_size
    x = torch.randn(videos, config.num_frames, 4, s, s, generator=gen)
    x[:, :, 3] = 1.0
    if band is not None:
        x[:, :, 3] = 0.0
        x[:, :, 3, :band] = 1.0
    return x


def _prompt(model: VideoPanda, text_before: list[int], text_after: list[int]) -> torch.Tensor:
    ph = [model.config.image_token_index] * model.config.num_frames
    return torch.tensor([[1, *text_before, *ph, *text_after]])


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return _reinit(leanvl.create_model("videopanda_tiny"))


def test_7b_preset_has_the_papers_45m_visual_parameters():
    with torch.device("meta"):
        model = leanvl.create_model("videopanda_7b")
    assert model.llm is None  # the 7B LLM is loaded lazily from llm_path, never here

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(model.stab) == 24_086_866
    assert count(model.projector) == 20_979_712
    assert count(model.stab) + count(model.projector) == 45_066_578
    # per-module counts of the spec's table (measured on the official classes)
    assert count(model.stab.patch_embed) == 602_112
    lste = model.stab.lste
    assert count(lste) - count(lste.dpe) == 1_403_218 and count(lste.dpe) == 28_672
    assert count(model.stab.gstra) - 1024 == 12_598_272  # minus the temporal cls query
    assert count(model.stab.lsd) == 4_199_424
    assert count(model.stab.fsra) - 1024 == 4_199_424  # minus the class embedding


def test_token_budget_per_aspect_ratio_at_full_geometry():
    """448 px / patch 14 / stride 2: square 273, 16:9 154, 4:3 205, zero frame 73 tokens."""
    config = VideoPandaConfig(width=32, gstra_heads=4, lsd_heads=4, fsra_heads=4,
                              lmhra_channels=21, llm_path="unused", llm_hidden_size=8)  # fmt: skip
    stab = VideoPanda(config).stab.eval()
    frames = torch.randn(1, 4, 4, 448, 448)
    frames[:, :, 3] = 0
    frames[0, 0, 3] = 1  # square
    frames[0, 1, 3, 84 : 84 + 252] = 1  # 16:9 letterbox: 9 LSD rows
    frames[0, 2, 3, :, 56 : 56 + 336] = 1  # 3:4 pillarbox: 12 LSD columns
    frames[0, 3] = 0  # zero-padded frame
    with torch.no_grad():
        out = stab(frames)
    assert [len(t) for t in out.tokens] == [273, 154, 13 * 16 + 1, 73]
    assert out.grids.tolist() == [[16, 16], [9, 16], [16, 12], [8, 8]]


def test_frame_sequence_layout_context_rows_and_split_tokens(tiny):
    frames = _frames(tiny.config, 1)
    with torch.no_grad():
        out = tiny.stab(frames)
    h, w = out.grids[0].tolist()
    seq = out.tokens[0]
    split = tiny.stab.split_token
    # every (w+1)-th token after the context token is the learned <row> split token
    for row in range(h):
        assert torch.equal(seq[1 + row * (w + 1) + w], split)
    assert not torch.equal(seq[1], split)


def test_chunks_are_temporally_independent(tiny):
    """LSTE/GSTRA never cross a chunk: changing chunk 2 leaves chunk 1's tokens unchanged."""
    frames = _frames(tiny.config, 1)
    changed = frames.clone()
    chunk = tiny.config.chunk_length
    changed[:, chunk:, :3] += 1.0
    with torch.no_grad():
        a, b = tiny.stab(frames).tokens, tiny.stab(changed).tokens
    for i in range(chunk):
        torch.testing.assert_close(a[i], b[i], rtol=0, atol=0)
    assert not torch.allclose(a[chunk], b[chunk])


def test_splice_replaces_placeholders_and_masks_labels(tiny):
    ids = _prompt(tiny, [5, 6], [7, 8, 2])
    labels = ids.clone()
    labels[ids < 0] = tiny.config.ignore_index
    frames = _frames(tiny.config, 1)
    with torch.no_grad():
        tokens, _ = tiny.encode_videos(frames)
        sp = tiny.splice(ids, tokens, labels=labels)
    n_visual = sum(len(t) for t in tokens)
    assert sp.inputs_embeds.shape[1] == ids.shape[1] - tiny.config.num_frames + n_visual
    embed = tiny.llm.get_input_embeddings().weight
    torch.testing.assert_close(sp.inputs_embeds[0, 2], embed[6])
    torch.testing.assert_close(sp.inputs_embeds[0, 3 : 3 + len(tokens[0])], tokens[0])
    assert (sp.labels[0, 3 : 3 + n_visual] == tiny.config.ignore_index).all()
    assert sp.labels[0, -3:].tolist() == [7, 8, 2]


def test_splice_rejects_wrong_placeholder_count(tiny):
    ids = _prompt(tiny, [5], [6])[:, :-2]  # drops one placeholder
    with pytest.raises(ValueError, match=r"input_ids\[0\] has 7 placeholders"):
        tiny(ids, _frames(tiny.config, 1))


def test_right_padding_does_not_change_logits(tiny):
    ids = _prompt(tiny, [5, 6], [7, 8])
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = padded != 0
    frames = _frames(tiny.config, 1)
    with torch.no_grad():
        plain = tiny(ids, frames).logits
        pad = tiny(padded, frames, attention_mask=mask).logits
    torch.testing.assert_close(pad[:, : plain.shape[1]], plain, atol=1e-5, rtol=1e-5)


def test_greedy_generation_with_cache_equals_unrolled_full_forward(tiny):
    ids = _prompt(tiny, [11, 12, 13], [14, 15])
    frames = _frames(tiny.config, 1, seed=1)
    steps = 4
    with torch.no_grad():
        gen = tiny.generate(ids, frames, max_new_tokens=steps, eos_token_id=-1)
        current = ids
        for step in range(steps):
            logits = tiny(current, frames).logits[:, -1]
            torch.testing.assert_close(gen.scores[:, step], logits, atol=1e-4, rtol=1e-4)
            token = logits.argmax(-1, keepdim=True)
            assert token.item() == gen.sequences[0, step].item()
            current = torch.cat([current, token], dim=1)
    assert len(set(gen.sequences[0].tolist())) > 1  # unit-scale weights: not one repeated id


def test_batched_left_padded_generation_equals_single(tiny):
    a = _prompt(tiny, [11, 12, 13, 14], [15])
    b = _prompt(tiny, [21], [22])
    width = a.shape[1]
    b_pad = torch.cat([b, torch.zeros(1, width - b.shape[1], dtype=torch.long)], dim=1)
    ids = torch.cat([a, b_pad])
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, b.shape[1] :] = False
    frames = _frames(tiny.config, 2, seed=2)
    with torch.no_grad():
        both = tiny.generate(ids, frames, attention_mask=mask, max_new_tokens=3, eos_token_id=-1)
        one = tiny.generate(b, frames[1:], max_new_tokens=3, eos_token_id=-1)
    assert both.sequences[1].tolist() == one.sequences[0].tolist()
    torch.testing.assert_close(both.scores[1], one.scores[0], atol=1e-4, rtol=1e-4)


def test_sampling_is_seeded_and_tiny_top_p_is_greedy(tiny):
    ids = _prompt(tiny, [3], [4])
    frames = _frames(tiny.config, 1, seed=3)
    kw = {"max_new_tokens": 3, "eos_token_id": -1, "do_sample": True}
    with torch.no_grad():
        greedy = tiny.generate(ids, frames, max_new_tokens=3, eos_token_id=-1).sequences
        nucleus = tiny.generate(ids, frames, top_p=1e-6, **kw).sequences
        s1 = tiny.generate(ids, frames, generator=torch.Generator().manual_seed(7), **kw)
        s2 = tiny.generate(ids, frames, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(nucleus, greedy)
    assert torch.equal(s1.sequences, s2.sequences)


def test_generation_stops_at_eos(tiny):
    ids = _prompt(tiny, [3], [4])
    frames = _frames(tiny.config, 1, seed=3)
    with torch.no_grad():
        first = tiny.generate(ids, frames, max_new_tokens=1).sequences[0, 0].item()
        stopped = tiny.generate(ids, frames, max_new_tokens=5, eos_token_id=first)
    assert stopped.sequences.tolist() == [[first]]


def test_save_and_load_roundtrip_keeps_outputs(tiny, tmp_path):
    leanvl.save_model(tiny, tmp_path / "ckpt")
    loaded = leanvl.load(tmp_path / "ckpt")
    ids = _prompt(tiny, [5], [6])
    frames = _frames(tiny.config, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, frames).logits, tiny(ids, frames).logits)


def test_llm_from_local_path_is_loaded_lazily(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )  # fmt: skip
    )
    llm.save_pretrained(tmp_path / "llm")
    model = leanvl.create_model(
        "videopanda_tiny", llm=None, llm_path=str(tmp_path / "llm"), llm_hidden_size=32
    )
    assert model.llm is None
    lm = model.language_model
    torch.testing.assert_close(lm.lm_head.weight, llm.lm_head.weight)
    out = model(_prompt(model, [5], [6]), _frames(model.config, 1))
    assert out.logits.shape[-1] == 64
    wrong = leanvl.create_model(
        "videopanda_tiny", llm=None, llm_path=str(tmp_path / "llm"), llm_hidden_size=48
    )
    with pytest.raises(ConfigError, match="llm_hidden_size=48"):
        wrong.language_model  # noqa: B018


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"widht": 32}, "did you mean 'width'"),
        ({"llm_path": "x"}, "exactly one of 'llm'"),
        ({"chunk_length": 3}, "num_frames=8: must be a multiple of chunk_length=3"),
        ({"image_size": 70}, "image_size=70: must be a multiple of patch_size=4"),
        ({"gstra_heads": 5}, "gstra_heads=5 must be positive and divide the STAB width 64"),
        ({"projector": "mlp"}, "projector='mlp'"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        leanvl.create_model("videopanda_tiny", **overrides)


def test_frames_shape_errors_name_the_argument(tiny):
    with pytest.raises(ValueError, match="not a multiple of chunk_length=4"):
        tiny.stab(torch.zeros(1, 6, 4, 72, 72))
    with pytest.raises(ValueError, match=r"expected \(B, T, 4, S, S\)"):
        tiny.stab(torch.zeros(1, 8, 3, 72, 72))


class _ToySentencePiece:
    """Word-level stand-in for the Llama tokenizer: BOS first, a leading space is part of the
    next word (``"▁word"``) and a trailing space is its own piece - the behaviour the official
    ``- 2`` instruction-length correction relies on."""

    bos_token_id = 1

    def __init__(self):
        self.vocab = {"</s>": 2}

    def __call__(self, text):
        import re
        from types import SimpleNamespace

        pieces = re.findall(r"</s>| ?\w+| ?[^\w\s<]|\s", text)
        ids = [1] + [self.vocab.setdefault(p, len(self.vocab) + 3) for p in pieces]
        return SimpleNamespace(input_ids=ids)


def test_build_prompt_matches_the_official_templates():
    from leanvl.models.videopanda import build_prompt

    sys_eval = (
        "A chat between a curious human and an artificial intelligence assistant. The "
        "assistant gives helpful, detailed, and polite answers to the human's questions."
    )
    assert build_prompt([("What?", None)], num_frames=2) == (
        f"{sys_eval} USER: <image><image>\nWhat? ASSISTANT:"
    )
    train = build_prompt([("Q1", "A1"), ("Q2", "A2")], template="vicuna_v1", num_frames=1)
    assert train.startswith("A chat between a curious user ")
    assert train.endswith(" USER: <image>\nQ1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>")


def test_tokenize_prompt_puts_one_placeholder_per_frame():
    from leanvl.models.videopanda import build_prompt, tokenize_prompt

    tok = _ToySentencePiece()
    ids = tokenize_prompt(build_prompt([("Hi", None)], num_frames=8), tok)
    assert ids[0] == 1 and ids.count(1) == 1  # only the first piece keeps its BOS
    first = ids.index(-200)
    assert ids[first : first + 8] == [-200] * 8 and ids.count(-200) == 8


def test_conversation_labels_keep_only_answers_and_eos():
    from leanvl.models.videopanda import build_prompt, conversation_labels, tokenize_prompt

    tok = _ToySentencePiece()
    prompt = build_prompt([("Q one", "answer one"), ("Q two", "answer two")], "vicuna_v1", 8)
    ids = tokenize_prompt(prompt, tok)
    labels = conversation_labels(prompt, ids, tok)
    names = {v: k for k, v in tok.vocab.items()}
    kept = [names[i] for i in labels if i != -100]
    assert kept == [" answer", " one", "</s>", " answer", " two", "</s>"]
    assert labels[: ids.index(-200) + 8] == [-100] * (ids.index(-200) + 8)
    assert set(conversation_labels(prompt, [*ids, 5], tok)) == {-100}  # length mismatch
