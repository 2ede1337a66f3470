"""Tokenizer loading with the real BERT vocab, MLM masking statistics, caption cleaning."""

from __future__ import annotations

import pytest
import torch

from leanvl.text import default_vocab_path, load_tokenizer, mask_tokens, pre_text


@pytest.fixture(scope="module")
def tokenizer(bert_vocab):
    return load_tokenizer(bert_vocab, max_length=16)


def test_known_ids_from_vocab_file_folder_and_default(bert_vocab, tokenizer):
    assert tokenizer("hello world").input_ids == [101, 7592, 2088, 102]
    assert tokenizer("Hello World!").input_ids == [101, 7592, 2088, 999, 102]  # uncased
    assert tokenizer.model_max_length == 16
    assert tokenizer.tokenize("unaffable") == ["una", "##ffa", "##ble"]
    assert default_vocab_path() == bert_vocab
    assert load_tokenizer()("hello world").input_ids == [101, 7592, 2088, 102]
    folder = load_tokenizer(bert_vocab.parent)  # has tokenizer.json
    assert folder("hello world").input_ids == [101, 7592, 2088, 102]
    assert (tokenizer.mask_token_id, tokenizer.pad_token_id, len(tokenizer)) == (103, 0, 30522)


def test_unknown_name_offline_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="allow_download"):
        load_tokenizer("no-such-org/no-such-tokenizer")


def random_batch(tokenizer, rows=512, length=64, pad_from=48, seed=0):
    """[CLS] random word ids [SEP] [PAD]... with ids from the ordinary part of the vocab."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1996, 29612, (rows, length), generator=g)
    ids[:, 0] = tokenizer.cls_token_id
    ids[:, pad_from - 1] = tokenizer.sep_token_id
    ids[:, pad_from:] = tokenizer.pad_token_id
    return ids


def test_mask_fractions_80_10_10(tokenizer):
    ids = random_batch(tokenizer)
    masked, labels = mask_tokens(ids, tokenizer, 0.15, generator=torch.Generator().manual_seed(1))
    maskable = 512 * 46  # 48 - [CLS] - [SEP]
    chosen = labels != -100
    assert abs(chosen.sum().item() / maskable - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(masked[~chosen], ids[~chosen])
    n = chosen.sum().item()
    to_mask = (masked[chosen] == tokenizer.mask_token_id).float().sum().item() / n
    kept = (masked[chosen] == ids[chosen]).float().sum().item() / n
    randomised = 1 - to_mask - kept
    assert abs(to_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.015 and abs(randomised - 0.1) < 0.015


def test_special_tokens_and_padding_never_masked(tokenizer):
    ids = random_batch(tokenizer, rows=32)
    ids[:, 5] = tokenizer.unk_token_id
    ids[:, 6] = tokenizer.mask_token_id
    masked, labels = mask_tokens(ids, tokenizer, probability=1.0)
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert torch.all(labels[special] == -100) and torch.equal(masked[special], ids[special])
    assert torch.all(labels[~special] == ids[~special])  # probability 1: every other token


def test_whole_word_groups_are_masked_together(tokenizer):
    text = "the unaffable embeddings are playing with tokenization"
    ids = tokenizer([text] * 400, padding="max_length", max_length=20, return_tensors="pt")
    ids = ids.input_ids
    pieces = tokenizer.convert_ids_to_tokens(ids[0])
    words, current = [], []
    for position, piece in enumerate(pieces):
        if piece in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        if piece.startswith("##"):
            current.append(position)
        else:
            current = [position]
            words.append(current)
    assert [len(w) for w in words] == [1, 3, 4, 1, 1, 1, 2]
    g = torch.Generator().manual_seed(3)
    _, labels = mask_tokens(ids, tokenizer, probability=0.3, whole_word=True, generator=g)
    chosen = labels != -100
    for word in words:
        group = chosen[:, word]
        assert torch.all(group.all(dim=1) | ~group.any(dim=1)), f"word {word} split"
    word_rate = torch.stack([chosen[:, w[0]] for w in words]).float().mean().item()
    assert abs(word_rate - 0.3) < 0.03
    assert not chosen[:, 0].any() and not chosen[:, len(pieces) - 1].any()


def test_generator_makes_masking_deterministic(tokenizer):
    ids = random_batch(tokenizer, rows=8)
    runs = [
        mask_tokens(ids, tokenizer, generator=torch.Generator().manual_seed(seed))
        for seed in (5, 5, 6)
    ]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][1], runs[2][1])
    single, labels = mask_tokens(ids[0], tokenizer, generator=torch.Generator().manual_seed(5))
    assert single.shape == ids[0].shape and labels.shape == ids[0].shape


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A man's dog -- jumps/runs!  <person>", "a mans dog jumps runs person"),
        ('"Hello," (she) said: *yes*; ~ok~ #C?', "hello she said yes ok c"),
        ("  Multiple    spaces\n", "multiple spaces"),
    ],
)
def test_pre_text(raw, clean):
    assert pre_text(raw) == clean


def test_pre_text_max_words():
    assert pre_text("one two three four", max_words=2) == "one two"
