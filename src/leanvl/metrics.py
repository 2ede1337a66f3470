"""Evaluation metrics for video-language tasks, as the papers report them.

* Retrieval (text→video and video→text): recall at k, median and mean rank, from a similarity
  matrix; a text or video with several ground-truth partners counts its best-ranked one
  (the Singularity / SViTT convention for multi-caption test sets).
* Open-ended QA: accuracy over a closed answer vocabulary. Out-of-vocabulary ground truths count
  as wrong; the official-style number that leaves them out is returned beside it.
* Multiple choice: argmax accuracy over candidates.
* EgoMCQ: intra-video and inter-video accuracy, with the question type given by the data.

Every function returns plain Python floats/ints (fractions in [0, 1], ranks 1-based) so results
serialise to JSON directly. Metrics over an empty subset are ``nan`` with a count of 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "egomcq_accuracy",
    "mc_accuracy",
    "qa_accuracy",
    "ranks_of_targets",
    "retrieval_metrics",
]

IGNORE_INDEX = -100  # label of an answer outside the vocabulary


def ranks_of_targets(scores: torch.Tensor, targets: Sequence[Sequence[int]]) -> torch.Tensor:
    """1-based rank, in each row of ``scores``, of the best-scored of that row's targets.

    Ties are broken pessimistically (a target tied with a wrong item ranks below it), so a
    constant score matrix gives chance-level, not perfect, recall.

    Args:
        scores: (N, M) similarity, higher is better.
        targets: for each of the N rows, the indices (into M) that are correct.
    """
    if scores.ndim != 2 or len(targets) != scores.shape[0]:
        raise ValueError(f"scores {tuple(scores.shape)} and {len(targets)} target lists disagree")
    scores = scores.detach().float().cpu()
    gold = torch.zeros(scores.shape, dtype=torch.bool)
    for row, idx in enumerate(targets):
        if len(idx) == 0:
            raise ValueError(f"row {row} has no target")
        gold[row, list(idx)] = True
    best = scores.masked_fill(~gold, float("-inf")).amax(dim=1, keepdim=True)
    # Rank = 1 + items strictly better + wrong items tied with the best target.
    worse_or_tied = (scores > best) | ((scores == best) & ~gold)
    return worse_or_tied.sum(dim=1) + 1


def _rank_summary(ranks: torch.Tensor, prefix: str, ks: Sequence[int]) -> dict[str, float]:
    out = {f"{prefix}_r{k}": float((ranks <= k).float().mean()) for k in ks}
    out[f"{prefix}_medr"] = float(ranks.float().median())
    out[f"{prefix}_meanr"] = float(ranks.float().mean())
    return out


def retrieval_metrics(
    sim_t2v: torch.Tensor,
    text_to_video: Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Text→video and video→text recall@k, median and mean rank.

    Args:
        sim_t2v: (num_texts, num_videos) similarity.
        text_to_video: for each text, the index of its video (several texts may share one).
        ks: the k of recall@k.

    Returns:
        ``t2v_r1, t2v_r5, t2v_r10, t2v_medr, t2v_meanr`` and the same for ``v2t``, plus
        ``r_mean`` (mean of all six recalls, the usual model-selection number).
    """
    num_texts, num_videos = sim_t2v.shape
    if len(text_to_video) != num_texts:
        raise ValueError(f"{len(text_to_video)} text→video labels for {num_texts} texts")
    video_to_texts: list[list[int]] = [[] for _ in range(num_videos)]
    for t, v in enumerate(text_to_video):
        if not 0 <= v < num_videos:
            raise ValueError(f"text {t} points to video {v}, outside [0, {num_videos})")
        video_to_texts[v].append(t)
    orphans = [v for v, texts in enumerate(video_to_texts) if not texts]
    if orphans:
        raise ValueError(f"videos without any caption: {orphans[:10]}")
    out = _rank_summary(ranks_of_targets(sim_t2v, [[v] for v in text_to_video]), "t2v", ks)
    out.update(_rank_summary(ranks_of_targets(sim_t2v.t(), video_to_texts), "v2t", ks))
    out["r_mean"] = sum(out[f"{d}_r{k}"] for d in ("t2v", "v2t") for k in ks) / (2 * len(ks))
    return out


def _by_type(correct: torch.Tensor, types: Sequence[str | None] | None) -> dict[str, float]:
    if types is None:
        return {}
    if len(types) != len(correct):
        raise ValueError(f"{len(types)} types for {len(correct)} predictions")
    out = {}
    for name in sorted({t for t in types if t is not None}):
        sel = torch.tensor([t == name for t in types])
        out[name] = float(correct[sel].float().mean())
    return out


def qa_accuracy(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    types: Sequence[str | None] | None = None,
    kinds: Sequence[str | None] | None = None,
) -> dict[str, object]:
    """Open-ended QA accuracy over a closed answer vocabulary.

    Args:
        predictions: (N,) predicted answer indices.
        labels: (N,) ground-truth indices; ``-100`` marks an answer outside the vocabulary.
        types: optional question type per item (e.g. ``static`` / ``temporal``).
        kinds: optional finer category per item (e.g. ``direction``, ``count``).

    Returns:
        ``accuracy`` (out-of-vocabulary answers count as wrong), ``accuracy_in_vocab`` (the
        official-style number over in-vocabulary questions only), ``n``, ``n_out_of_vocab``,
        ``by_type`` (accuracy per type, out-of-vocabulary counted wrong) and, when ``kinds`` is
        given and names at least one, ``by_kind`` (the same per kind).
    """
    predictions, labels = predictions.cpu().long(), labels.cpu().long()
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} vs labels {tuple(labels.shape)}")
    in_vocab = labels != IGNORE_INDEX
    correct = (predictions == labels) & in_vocab
    n = len(labels)
    return {
        "accuracy": float(correct.float().mean()) if n else float("nan"),
        "accuracy_in_vocab": float(correct[in_vocab].float().mean())
        if in_vocab.any()
        else float("nan"),
        "n": n,
        "n_out_of_vocab": int((~in_vocab).sum()),
        "by_type": _by_type(correct, types),
        **({"by_kind": by_kind} if (by_kind := _by_type(correct, kinds)) else {}),
    }


def mc_accuracy(
    scores: torch.Tensor,
    answers: torch.Tensor,
    types: Sequence[str | None] | None = None,
) -> dict[str, object]:
    """Multiple-choice accuracy: the highest-scored candidate must be the answer.

    Args:
        scores: (N, K) score of each candidate.
        answers: (N,) index of the correct candidate.
        types: optional type per question, for a per-type breakdown.
    """
    scores, answers = scores.detach().float().cpu(), answers.cpu().long()
    if scores.ndim != 2 or answers.shape != (scores.shape[0],):
        raise ValueError(f"scores {tuple(scores.shape)} vs answers {tuple(answers.shape)}")
    correct = scores.argmax(dim=1) == answers
    return {
        "accuracy": float(correct.float().mean()) if len(correct) else float("nan"),
        "n": len(correct),
        "by_type": _by_type(correct, types),
    }


def egomcq_accuracy(
    scores: torch.Tensor, answers: torch.Tensor, intra: torch.Tensor | Sequence[bool]
) -> dict[str, float | int]:
    """EgoMCQ accuracy split into intra-video and inter-video questions.

    The split comes from the data (``intra[i]`` is true when all five candidates of question i
    come from the query's video), not from the dataset's ``types`` field, whose labels the
    official EgoVLP metric swaps.

    Args:
        scores: (N, 5) text-to-candidate similarity.
        answers: (N,) index of the correct candidate.
        intra: (N,) booleans.

    Returns:
        ``{"intra": float, "inter": float, "n_intra": int, "n_inter": int}``.
    """
    scores, answers = scores.detach().float().cpu(), answers.cpu().long()
    intra_mask = torch.as_tensor(intra, dtype=torch.bool).cpu()
    if scores.ndim != 2 or answers.shape != (scores.shape[0],) or intra_mask.shape != answers.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)}, answers {tuple(answers.shape)}, "
            f"intra {tuple(intra_mask.shape)} disagree"
        )
    correct = (scores.argmax(dim=1) == answers).float()

    def mean(sel: torch.Tensor) -> float:
        return float(correct[sel].mean()) if sel.any() else float("nan")

    return {
        "intra": mean(intra_mask),
        "inter": mean(~intra_mask),
        "n_intra": int(intra_mask.sum()),
        "n_inter": int((~intra_mask).sum()),
    }
