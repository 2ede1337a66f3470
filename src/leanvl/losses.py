"""Contrastive video-text losses: InfoNCE (SViTT's ITC) and EgoNCE (SViTT-Ego / EgoVLP).

* :func:`info_nce` -- symmetric InfoNCE over the local batch as SViTT's ITC computes it
  (Li et al., CVPR 2023, built on Singularity / ALBEF): the targets of each row are its
  positives, uniformly weighted; the two directions are averaged.
* :func:`ego_nce` -- EgoNCE (Lin et al., "Egocentric Video-Language Pretraining", NeurIPS 2022;
  used by SViTT-Ego, Valdez et al., 2024), exactly as EgoVLP's ``model/loss.py::EgoNCE``:
  *action-aware positives* -- two clips whose narrations share at least one Ego4D verb class and
  at least one noun class are positives (plus the diagonal) -- and ``-log`` of the softmax mass
  on the positives, summed over the text->video and video->text directions. Its *scene-aware
  negatives* come from batch construction, see
  :class:`leanvl.data.samplers.SceneGroupedBatchSampler`.
* :func:`tag_multi_hot` builds the verb / noun multi-hot vectors from EgoClip's ``tag_verb`` /
  ``tag_noun`` tuples.

Nothing here imports Lightning; a training recipe picks the loss and calls it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from leanvl.data.datasets import multi_hot

__all__ = [
    "EGO4D_NUM_NOUNS",
    "EGO4D_NUM_VERBS",
    "EGONCE_MODES",
    "ego_nce",
    "egonce_positive_mask",
    "info_nce",
    "tag_cosine_similarity",
    "tag_multi_hot",
]

EGO4D_NUM_VERBS = 118
"""Ego4D verb classes (length of EgoVLP's verb multi-hot vectors)."""

EGO4D_NUM_NOUNS = 582
"""Ego4D noun classes (length of EgoVLP's noun multi-hot vectors)."""

EGONCE_MODES = ("verb_noun", "noun", "verb")
"""Positive rules of :func:`ego_nce`: shared verb AND noun (the paper's), noun only, verb only."""


def info_nce(
    sim: Tensor, temperature: float | Tensor = 1.0, positive_mask: Tensor | None = None
) -> Tensor:
    """Symmetric InfoNCE as SViTT's ITC: ``(L_row + L_col) / 2``.

    ``L_row = mean_i(-sum_j Y_ij log softmax_j(sim_ij / temperature))`` with ``Y`` the positive
    mask row-normalised; ``L_col`` is the same on ``sim.T`` with ``positive_mask.T``. With the
    default mask (the diagonal) this is CLIP's loss. With ``temperature=1`` and the mask
    ``idx_i == idx_j`` it equals :func:`leanvl.models.svitt.itc_loss` on SViTT's ``sim_i2t``
    (which already holds the division by the learnable temperature).

    Args:
        sim: ``(N, N)`` similarity, row ``i`` and column ``i`` belong to the same pair.
        temperature: divides ``sim`` (a float, or a 0-d tensor such as a learnable ``temp``).
        positive_mask: ``(N, N)`` bool / 0-1 matrix of in-batch positives; ``None`` = identity.
            Every row and column must hold at least one positive.

    Returns:
        The scalar loss.
    """
    _check_square(sim, "sim")
    n = sim.shape[0]
    if positive_mask is None:
        positive = torch.eye(n, dtype=sim.dtype, device=sim.device)
    else:
        if positive_mask.shape != sim.shape:
            raise ValueError(
                f"positive_mask {tuple(positive_mask.shape)} does not match sim {tuple(sim.shape)}"
            )
        positive = positive_mask.to(device=sim.device, dtype=sim.dtype)
        if (positive.sum(1) == 0).any() or (positive.sum(0) == 0).any():
            raise ValueError("positive_mask has a row or column without any positive")
    logits = sim / temperature
    rows = -(F.log_softmax(logits, dim=1) * positive / positive.sum(1, keepdim=True)).sum(1)
    cols_mask = positive.t()
    cols = -(F.log_softmax(logits.t(), dim=1) * cols_mask / cols_mask.sum(1, keepdim=True)).sum(1)
    return (rows.mean() + cols.mean()) / 2


def tag_multi_hot(
    tag_verb: Sequence[Sequence[int]],
    tag_noun: Sequence[Sequence[int]],
    num_verbs: int = EGO4D_NUM_VERBS,
    num_nouns: int = EGO4D_NUM_NOUNS,
) -> tuple[Tensor, Tensor]:
    """Verb and noun multi-hot vectors of a batch of EgoClip narrations.

    Args:
        tag_verb: per clip, its verb class ids (``EgoClipRecord.tag_verb``, e.g. ``(93,)``).
        tag_noun: per clip, its noun class ids (``EgoClipRecord.tag_noun``).
        num_verbs: verb vocabulary size (118 for Ego4D; the synthetic benchmark has 6).
        num_nouns: noun vocabulary size (582 for Ego4D; the synthetic benchmark has 6).

    Returns:
        ``(verb_vec (B, num_verbs), noun_vec (B, num_nouns))`` float 0/1 tensors.

    Raises:
        ValueError: the two lists differ in length, or an id is outside its vocabulary.
    """
    if len(tag_verb) != len(tag_noun):
        raise ValueError(f"{len(tag_verb)} tag_verb lists but {len(tag_noun)} tag_noun lists")
    try:
        verbs = multi_hot(tag_verb, num_verbs)
    except ValueError as err:
        raise ValueError(f"tag_verb: {err}") from None
    try:
        nouns = multi_hot(tag_noun, num_nouns)
    except ValueError as err:
        raise ValueError(f"tag_noun: {err}") from None
    return verbs, nouns


def tag_cosine_similarity(vectors: Tensor, eps: float = 1e-8) -> Tensor:
    """EgoVLP's ``sim_matrix(a, a)``: row-normalised dot products, norms clamped at ``eps``.

    A clip without tags (zero vector) has similarity 0 with everything, itself included.
    """
    vectors = vectors.float()
    norms = vectors.norm(dim=1, keepdim=True).clamp_min(eps)
    unit = vectors / norms
    return unit @ unit.t()


def egonce_positive_mask(
    verb_vec: Tensor | None, noun_vec: Tensor | None, mode: str = "verb_noun"
) -> Tensor:
    """EgoNCE's positive set: ``mask = mask_v * mask_n + I`` (or ``mask_n + I``, ``mask_v + I``).

    ``mask_v`` / ``mask_n`` are :func:`tag_cosine_similarity` of the verb / noun multi-hot
    vectors, so ``(i, j)`` is positive (``mask > 0``) iff the narrations share a verb class and
    a noun class (``"verb_noun"``), a noun class (``"noun"``) or a verb class (``"verb"``), and
    always on the diagonal.

    Args:
        verb_vec: ``(N, num_verbs)`` multi-hot (unused, may be None, in mode ``"noun"``).
        noun_vec: ``(N, num_nouns)`` multi-hot (unused, may be None, in mode ``"verb"``).
        mode: one of :data:`EGONCE_MODES`.

    Returns:
        ``(N, N)`` bool mask.
    """
    if mode not in EGONCE_MODES:
        raise ValueError(f"EgoNCE mode={mode!r}: expected one of {EGONCE_MODES}")
    needed = {"verb_noun": ("verb_vec", "noun_vec"), "noun": ("noun_vec",), "verb": ("verb_vec",)}
    given = {"verb_vec": verb_vec, "noun_vec": noun_vec}
    for name in needed[mode]:
        if given[name] is None or given[name].ndim != 2:
            raise ValueError(f"EgoNCE mode={mode!r} needs {name} as an (N, classes) tensor")
    sizes = {given[name].shape[0] for name in needed[mode]}
    if len(sizes) != 1:
        raise ValueError(f"verb_vec and noun_vec disagree on the batch size: {sorted(sizes)}")
    n = sizes.pop()
    device = given[needed[mode][0]].device
    if mode == "verb_noun":
        mask = tag_cosine_similarity(verb_vec) * tag_cosine_similarity(noun_vec)
    else:
        mask = tag_cosine_similarity(given[needed[mode][0]])
    return (mask + torch.eye(n, device=device)) > 0


def ego_nce(
    sim_t2v: Tensor,
    verb_vec: Tensor | None,
    noun_vec: Tensor | None,
    temperature: float | Tensor = 0.05,
    mode: str = "verb_noun",
) -> Tensor:
    """EgoNCE (EgoVLP's implementation): ``-mean_i log sum_{j in P(i)} softmax(x_i / tau)_j``
    ``- mean_j log sum_{i in P(j)} softmax(x^T_j / tau)_i``.

    Both directions use the same (symmetric) positive set ``P`` of
    :func:`egonce_positive_mask`, and they are **summed**, not averaged (so with no
    off-diagonal positives EgoNCE is ``2 *`` :func:`info_nce` at the same temperature).

    Args:
        sim_t2v: ``(N, N)`` text-video similarity, rows = texts (EgoVLP: cosine similarity of
            the embeddings; with SViTT, the normalised ITC features ``t @ v.T``).
        verb_vec: ``(N, num_verbs)`` verb multi-hot vectors (:func:`tag_multi_hot`).
        noun_vec: ``(N, num_nouns)`` noun multi-hot vectors.
        temperature: tau (EgoVLP: 0.05); a float or a 0-d tensor.
        mode: ``"verb_noun"`` (the paper), ``"noun"`` or ``"verb"``.

    Returns:
        The scalar loss.
    """
    _check_square(sim_t2v, "sim_t2v")
    positive = egonce_positive_mask(verb_vec, noun_vec, mode).to(sim_t2v.device)
    if positive.shape != sim_t2v.shape:
        raise ValueError(
            f"tags of {positive.shape[0]} clips for a similarity of {tuple(sim_t2v.shape)}"
        )
    logits = sim_t2v / temperature
    # log(sum over positives of softmax) = logsumexp over positives of log_softmax: no log(0).
    t2v = F.log_softmax(logits, dim=1).masked_fill(~positive, float("-inf")).logsumexp(dim=1)
    v2t = F.log_softmax(logits.t(), dim=1).masked_fill(~positive, float("-inf")).logsumexp(dim=1)
    return -t2v.mean() - v2t.mean()


def _check_square(sim: Tensor, name: str) -> None:
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"{name} of shape {tuple(sim.shape)}: expected a square (N, N) matrix")
