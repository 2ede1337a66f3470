"""EgoMCQ evaluation of a dual video-text encoder (SViTT-Ego, EgoVLP protocol).

EgoMCQ (Lin et al., "Egocentric Video-Language Pretraining", NeurIPS 2022): given the narration
of a query clip, pick the matching clip among 5 candidates. As in EgoVLP (and, by inference,
SViTT-Ego; spec svitt.md §13), the score of a candidate is the cosine similarity of the query's
text embedding and the candidate's video embedding (SViTT's normalised ITC features, no ITM
re-ranking), the candidates' frames are sampled ``"uniform"``-ly (or ``"middle"``) inside their
clip window, and accuracy is reported separately for intra-video questions (all 5 candidates
from the query's video) and inter-video ones. The split is decided from the data
(:attr:`leanvl.data.EgoMCQRecord.intra`), never from the file's ``types`` field, whose labels
the official metric swaps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from leanvl.data.annotations import read_egomcq_json
from leanvl.data.datasets import EgoMCQDataset, VideoBatchCollator
from leanvl.metrics import egomcq_accuracy
from leanvl.text import load_tokenizer, pre_text
from leanvl.video.transforms import build_transform

__all__ = [
    "EGOMCQ_SAMPLING",
    "SViTTTextCollator",
    "egomcq_dataset",
    "egomcq_scores",
    "evaluate_egomcq",
    "svitt_text_ids",
]

EGOMCQ_SAMPLING = ("uniform", "middle")
"""Frame sampling modes accepted for EgoMCQ candidates (EgoVLP uses ``"uniform"``)."""


def egomcq_dataset(
    annotation_file: str | Path,
    video_root: str | Path,
    num_frames: int = 4,
    image_size: int = 224,
    sample: str = "uniform",
    on_error: str = "raise",
    chunk_seconds: float | None = None,
) -> EgoMCQDataset:
    """An :class:`EgoMCQDataset` with SViTT's test preprocessing.

    Frames are decoded at their native size and resized to ``image_size`` square (bicubic,
    normalised to [-1, 1]); narrations are cleaned with :func:`leanvl.text.pre_text`.

    Args:
        annotation_file: ``egomcq.json``.
        video_root: folder holding ``<video_uid>/<chunk>.mp4``.
        num_frames: frames per candidate clip.
        image_size: model input side.
        sample: ``"uniform"`` (EgoVLP) or ``"middle"``.
        on_error: ``"raise"`` (default: a missing test video must not change the metric) or
            ``"skip"``.
        chunk_seconds: chunk length of the video files (``None``: Ego4D's 600 s).
    """
    if sample not in EGOMCQ_SAMPLING:
        raise ValueError(f"EgoMCQ sample={sample!r}: expected one of {EGOMCQ_SAMPLING}")
    extra = {} if chunk_seconds is None else {"chunk_seconds": chunk_seconds}
    return EgoMCQDataset(
        read_egomcq_json(annotation_file),
        video_root,
        num_frames,
        sample=sample,
        transform=build_transform("svitt", train=False, size=image_size),
        on_error=on_error,
        text_transform=pre_text,
        **extra,
    )


def svitt_text_ids(
    tokenizer: Any, texts: list[str], max_length: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids as SViTT's (ALBEF) tokenizer makes them: ``[CLS] tokens``, no ``[SEP]``.

    A Hugging Face BERT tokenizer adds ``[SEP]``; it is tokenized to ``max_length + 1`` and the
    ``[SEP]`` removed, so truncated texts keep ``max_length - 1`` word pieces, as officially.

    Returns:
        ``(input_ids, attention_mask)``, each ``(B, max_length)``, padded with 0.
    """
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=max_length + 1,
        return_tensors="pt",
    )  # fmt: skip
    return _drop_sep(enc["input_ids"], enc["attention_mask"], tokenizer.sep_token_id, max_length)


def _drop_sep(ids: torch.Tensor, mask: torch.Tensor, sep_id: int, max_length: int):
    sep = ids == sep_id
    ids, mask = ids.masked_fill(sep, 0), mask.masked_fill(sep, 0)
    return ids[:, :max_length].contiguous(), mask[:, :max_length].contiguous()


class SViTTTextCollator(VideoBatchCollator):
    """:class:`VideoBatchCollator` whose ``text_ids`` / ``text_mask`` follow
    :func:`svitt_text_ids` (``[CLS] tokens``, no ``[SEP]``, ``max_length`` columns)."""

    def __init__(self, tokenizer: Any, max_length: int = 32):
        super().__init__(tokenizer, max_length=max_length + 1)
        self.text_length = max_length

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate, then drop ``[SEP]`` from the text fields."""
        batch = super().__call__(samples)
        for key in self.TEXT_FIELDS:
            if f"{key}_ids" in batch:
                batch[f"{key}_ids"], batch[f"{key}_mask"] = _drop_sep(
                    batch[f"{key}_ids"], batch[f"{key}_mask"], self.tokenizer.sep_token_id,
                    self.text_length,
                )  # fmt: skip
        return batch


@torch.no_grad()
def egomcq_scores(
    model: nn.Module, video: torch.Tensor, text_ids: torch.Tensor, text_mask: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:  # fmt: skip
    """Cosine similarity of each query text with its 5 candidate clips.

    Args:
        model: a dual encoder with SViTT's ``encode_video`` / ``encode_text`` /
            ``itc_features`` (:class:`leanvl.models.svitt.SViTT`).
        video: ``(B, K, T, 3, H, W)`` float candidate clips.
        text_ids, text_mask: ``(B, L)`` query narrations.
        generator: random source of the sparse attention's block tables.

    Returns:
        ``(B, K)`` scores.
    """
    b, k = video.shape[:2]
    pooled = model.encode_video(video.flatten(0, 1), generator=generator).pooled
    text = model.encode_text(text_ids, text_mask)
    video_feat, text_feat = model.itc_features(pooled, text.cls)
    return torch.einsum("bkd,bd->bk", video_feat.view(b, k, -1), text_feat)


def evaluate_egomcq(
    model: nn.Module,
    data: EgoMCQDataset | Iterable[Mapping[str, Any]],
    tokenizer: Any = None,
    batch_size: int = 4,
    max_text_len: int = 32,
    device: str | torch.device | None = None,
    seed: int = 0,
    num_workers: int = 0,
    return_scores: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """EgoMCQ intra-video / inter-video accuracy of a dual encoder.

    Args:
        model: see :func:`egomcq_scores`; put in eval mode for the pass and restored after.
        data: an :class:`EgoMCQDataset` (batched here with ``batch_size``, ``num_workers``
            and a :class:`SViTTTextCollator`) or an iterable of such collated batches with
            ``video``, ``text_ids``, ``text_mask``, ``answer``, ``intra`` (and ``index``).
        tokenizer: tokenizer of the narrations (``None``: :func:`leanvl.text.load_tokenizer`);
            only used when ``data`` is a dataset.
        batch_size: questions per forward pass (each brings 5 clips).
        max_text_len: token length of the narrations, ``[CLS]`` included (SViTT pretraining:
            32).
        device: where to run (``None``: the model's device).
        seed: seed of the sparse attention's random block tables (deterministic scores).
        num_workers: DataLoader workers when ``data`` is a dataset.
        return_scores: also return ``scores`` ``(N, 5)``, ``answers`` ``(N,)``, ``is_intra``
            ``(N,)`` bool and ``index`` (dataset index of each row, when batches carry it).
        progress: called as ``progress(done, total)`` after each batch (total may be 0 when
            unknown).

    Returns:
        ``{"intra", "inter", "n_intra", "n_inter", "n", "accuracy"}`` (accuracies in [0, 1];
        ``nan`` for a split with no question) plus the tensors of ``return_scores``.
    """
    if isinstance(data, EgoMCQDataset):
        tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        collate = SViTTTextCollator(tokenizer, max_length=max_text_len)
        data = DataLoader(data, batch_size, num_workers=num_workers, collate_fn=collate)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total = len(data) if hasattr(data, "__len__") else 0
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    scores, answers, intra, index = [], [], [], []
    try:
        for step, batch in enumerate(data):
            scores.append(
                egomcq_scores(
                    model,
                    batch["video"].to(device),
                    batch["text_ids"].to(device),
                    batch["text_mask"].to(device),
                    generator,
                ).cpu()
            )
            answers.append(torch.as_tensor(batch["answer"]))
            intra.append(torch.as_tensor(batch["intra"], dtype=torch.bool))
            if "index" in batch:
                index.append(torch.as_tensor(batch["index"]))
            if progress is not None:
                progress(step + 1, total)
    finally:
        model.train(was_training)
    if not scores:
        raise ValueError("evaluate_egomcq: the data yielded no batch")
    all_scores, all_answers, all_intra = torch.cat(scores), torch.cat(answers), torch.cat(intra)
    result: dict[str, Any] = egomcq_accuracy(all_scores, all_answers, all_intra)
    correct = all_scores.argmax(dim=1) == all_answers
    result["n"] = int(all_answers.numel())
    result["accuracy"] = float(correct.float().mean())
    if return_scores:
        result.update(scores=all_scores, answers=all_answers, is_intra=all_intra)
        result["index"] = torch.cat(index) if index else None
    return result
