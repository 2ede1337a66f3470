"""Text side of the Video-Panda recipes: a word-level tokenizer, conversations, LLaVA JSON.

Video-Panda (Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free
Video-Language Models", CVPR 2025, arXiv 2412.18609) trains on LLaVA / Video-LLaVA
conversation JSON (spec ``videopanda.md`` §5.2) with the Vicuna-v1 template (§4.1). The released
model uses Vicuna's SentencePiece tokenizer; the tiny recipes use a **word-level** tokenizer
built from the training text (the ``tokenizers`` library), small enough for a 2-layer LLM:

* :func:`build_word_tokenizer` / :func:`tokenizer_from_json`: ``<unk>`` = 0 (also padding),
  ``<s>`` = 1 (prepended to every encoding, like Llama's BOS), ``</s>`` = 2 (end of answer),
  then the lower-cased words and punctuation marks of the texts, most frequent first.
* :func:`encode_conversation`: ids with one ``-200`` placeholder per frame and labels that keep
  only the answers and their ``</s>`` (the official ``preprocess_v1`` masking, computed from
  string offsets so it holds for any prefix-stable tokenizer).
* :func:`synth_to_llava`: the synthetic benchmark's QA and caption annotations written as
  LLaVA conversation JSON (``python -m leanvl.training.families.videopanda_text SYNTH_DIR``).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from leanvl.checkpoint import atomic_write_text
from leanvl.data.annotation_io import load_json_list
from leanvl.data.annotations import read_qa_json, read_retrieval_json
from leanvl.data.records import AnnotationError, ConversationRecord
from leanvl.models.videopanda import SYSTEM_PROMPTS, build_prompt, tokenize_prompt

__all__ = [
    "BOS",
    "CAPTION_PROMPT",
    "EOS",
    "UNK",
    "build_word_tokenizer",
    "conversation_turns",
    "encode_conversation",
    "normalize_answer",
    "read_conversations",
    "synth_to_llava",
    "texts_of_file",
    "tokenizer_from_json",
]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
CAPTION_PROMPT = "describe the video."
"""Human turn of caption samples (alignment and pretraining stages)."""
_SPECIAL_ROLES = ("USER:", "ASSISTANT:")
_MEDIA_TAG = re.compile(r"\s*<(video|image)>\s*")


def _wrap(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=UNK
    )


def build_word_tokenizer(texts: Iterable[str], min_count: int = 1) -> Any:
    """A word-level tokenizer over ``texts`` (plus the prompt templates' words).

    Args:
        texts: every text the model will read or write (questions, answers, captions).
        min_count: words seen fewer times become ``<unk>``.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` (``bos_token_id`` 1, ``eos_token_id`` 2,
        ``pad_token_id`` = ``unk_token_id`` = 0); ``backend_tokenizer.to_str()`` serialises it.
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    pre = pre_tokenizers.Whitespace()
    norm = normalizers.Lowercase()
    counts: Counter[str] = Counter()
    extra = [*SYSTEM_PROMPTS.values(), *_SPECIAL_ROLES, CAPTION_PROMPT]
    for text in [*extra, *texts]:
        for piece in text.split(EOS):
            counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(piece)))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    vocab = {UNK: 0, BOS: 1, EOS: 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.add_special_tokens([UNK, BOS, EOS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, 1)]
    )
    return _wrap(tok)


def tokenizer_from_json(text: str) -> Any:
    """Rebuild a tokenizer serialised with ``backend_tokenizer.to_str()``.

    Raises:
        ValueError: ``text`` is not a tokenizer JSON.
    """
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_str(text)
    except Exception as exc:  # the Rust side raises plain Exceptions
        raise ValueError(f"not a tokenizers JSON ({exc})") from exc
    return _wrap(tok)


def normalize_answer(text: str) -> str:
    """Exact-match normal form: lower case, ``</s>`` and punctuation removed, spaces collapsed."""
    text = text.replace(EOS, " ").lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


# ------------------------------------------------------------------------------ conversations
def conversation_turns(record: ConversationRecord, where: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of a LLaVA record; the ``<video>`` tag is dropped (the prompt
    builder puts the frame placeholders in front of the first question, as the official code).

    Raises:
        ValueError: turns do not alternate human / gpt starting with human (``where`` names
            the file and entry).
    """
    turns = list(record.conversations)
    if len(turns) < 2 or len(turns) % 2:
        raise ValueError(f"{where}: expected human/gpt turn pairs, got {len(turns)} turns")
    pairs = []
    for k in range(0, len(turns), 2):
        human, gpt = turns[k], turns[k + 1]
        if human.from_ != "human" or gpt.from_ != "gpt":
            raise ValueError(
                f"{where}: conversations[{k}:{k + 2}] are from {human.from_!r}/{gpt.from_!r}, "
                "expected 'human' then 'gpt'"
            )
        question = _MEDIA_TAG.sub(" ", human.value).strip()
        pairs.append((question, gpt.value.strip()))
    return pairs


def encode_conversation(
    turns: Sequence[tuple[str, str]],
    tokenizer: Any,
    num_frames: int,
    template: str = "vicuna_v1",
    image_token_index: int = -200,
    ignore_index: int = -100,
) -> tuple[list[int], list[int]]:
    """Token ids and labels of a training conversation.

    Ids are :func:`~leanvl.models.videopanda.tokenize_prompt` of
    :func:`~leanvl.models.videopanda.build_prompt`; labels keep each answer and its ``</s>``
    and mask everything else (system prompt, questions, ``ASSISTANT:``, placeholders), the
    official ``preprocess_v1`` rule. Answer spans are found by string offset and tokenising the
    prefixes; if a prefix does not tokenise to a prefix of the ids (a tokenizer that is not
    prefix-stable) the whole sample is masked, as the official code does on a length mismatch.
    """
    prompt = build_prompt(list(turns), template, num_frames)
    ids = tokenize_prompt(prompt, tokenizer, image_token_index)
    labels = [ignore_index] * len(ids)
    cursor = 0
    for _, answer in turns:
        tail = f"ASSISTANT: {answer}{EOS}"
        at = prompt.find(tail, cursor)
        if at < 0:  # cannot happen with build_prompt's output
            return ids, [ignore_index] * len(ids)
        start_ids = tokenize_prompt(prompt[: at + len("ASSISTANT:")], tokenizer, image_token_index)
        end_ids = tokenize_prompt(prompt[: at + len(tail)], tokenizer, image_token_index)
        n1, n2 = len(start_ids), len(end_ids)
        if ids[:n2] != end_ids or end_ids[:n1] != start_ids:
            return ids, [ignore_index] * len(ids)
        labels[n1:n2] = ids[n1:n2]
        cursor = at + len(tail)
    return ids, labels


# ------------------------------------------------------------------------------------ files
def _kind_of(path: Path) -> str:
    entries = load_json_list(path)
    if not entries:
        raise AnnotationError(path, None, None, "empty annotation list")
    first = entries[0]
    if not isinstance(first, dict):
        raise AnnotationError(path, "index 0", None, f"expected an object, got {first!r}")
    if "conversations" in first:
        return "llava"
    if "question" in first:
        return "qa"
    if "caption" in first:
        return "caption"
    raise AnnotationError(
        path,
        "index 0",
        None,
        "unknown annotation kind: expected LLaVA 'conversations', QA 'question'/'answer' or "
        "retrieval 'caption' entries",
    )


def read_conversations(path: str | Path, caption_prompt: str = CAPTION_PROMPT) -> list[dict]:
    """Training samples of an annotation file, whatever its format.

    LLaVA conversation JSON gives its turns; a QA JSON (the synthetic benchmark's) gives one
    single-round conversation per question; a retrieval JSON gives one sample per video whose
    answer is one of its captions (drawn per step) to the question ``caption_prompt``.

    Returns:
        Dicts ``{"video", "turns": [[(q, a), ...], ...] (alternatives), "answers", "type",
        "question_id"}``; ``answers`` are the accepted answers of the first turn.
    """
    path = Path(path)
    kind = _kind_of(path)
    out = []
    if kind == "llava":
        from leanvl.data.annotations import read_llava_json

        for i, rec in enumerate(read_llava_json(path)):
            if rec.video is None:
                raise AnnotationError(path, f"index {i}", "video", "video samples only")
            turns = conversation_turns(rec, f"'{path}' index {i}")
            out.append(
                {
                    "video": rec.video,
                    "turns": [turns],
                    "answers": (turns[0][1],),
                    "type": None,
                    "question_id": rec.id,
                }
            )
    elif kind == "qa":
        for rec in read_qa_json(path):
            out.append(
                {
                    "video": rec.video,
                    "turns": [[(rec.question, rec.answer)]],
                    "answers": tuple(rec.answers),
                    "type": rec.type,
                    "question_id": rec.question_id,
                }
            )
    else:
        for rec in read_retrieval_json(path):
            out.append(
                {
                    "video": rec.video,
                    "turns": [[(caption_prompt, c)] for c in rec.captions],
                    "answers": tuple(rec.captions),
                    "type": "caption",
                    "question_id": None,
                }
            )
    return out


def texts_of_file(path: str | Path) -> list[str]:
    """Every question and answer text of an annotation file (tokenizer vocabulary)."""
    texts = []
    for sample in read_conversations(path):
        for turns in sample["turns"]:
            for q, a in turns:
                texts += [q, a]
    return texts


def _has_entries(path: Path) -> bool:
    """Whether ``path`` exists and is not an empty JSON list (the synth writes ``[]`` for an
    empty split)."""
    return path.is_file() and path.read_text(encoding="utf-8").strip() not in ("", "[]")


def synth_to_llava(root: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the synthetic benchmark's annotations as LLaVA conversation JSON.

    For each split: ``llava_qa_<split>.json`` (one single-round conversation per question,
    ``id`` = the question id, the question type kept in ``type``) and
    ``llava_caption_<split>.json`` (one conversation per caption, asking
    :data:`CAPTION_PROMPT`).

    Args:
        root: the benchmark folder (``leanvl data synth OUT``).
        out_dir: output folder (default ``root/annotations``).

    Returns:
        The written files by name.
    """
    root = Path(root)
    ann = root / "annotations"
    out = Path(out_dir) if out_dir else ann
    written: dict[str, Path] = {}
    for split in ("train", "val", "test"):
        qa_file, ret_file = ann / f"qa_{split}.json", ann / f"ret_{split}.json"
        if _has_entries(qa_file):
            rows = [
                {
                    "id": r.question_id,
                    "video": r.video,
                    "type": r.type,
                    "conversations": [
                        {"from": "human", "value": f"<video>\n{r.question}"},
                        {"from": "gpt", "value": r.answer},
                    ],
                }
                for r in read_qa_json(qa_file)
            ]
            written[f"llava_qa_{split}.json"] = out / f"llava_qa_{split}.json"
            atomic_write_text(written[f"llava_qa_{split}.json"], json.dumps(rows, indent=1) + "\n")
        if _has_entries(ret_file):
            rows = [
                {
                    "id": f"{Path(r.video).stem}-c{k}",
                    "video": r.video,
                    "conversations": [
                        {"from": "human", "value": f"<video>\n{CAPTION_PROMPT}"},
                        {"from": "gpt", "value": c},
                    ],
                }
                for r in read_retrieval_json(ret_file)
                for k, c in enumerate(r.captions)
            ]
            name = f"llava_caption_{split}.json"
            written[name] = out / name
            atomic_write_text(written[name], json.dumps(rows, indent=1) + "\n")
    if not written:
        raise FileNotFoundError(f"'{ann}': no qa_<split>.json or ret_<split>.json files")
    return written


def _main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m leanvl.training.families.videopanda_text SYNTH_DIR [OUT_DIR]")
        return 2
    for name, path in synth_to_llava(*argv).items():
        print(f"wrote {path} ({name})")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
