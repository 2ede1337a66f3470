"""Node sparsity: keep the tokens a CLS query attends to most, discard the rest.

SViTT (Li et al., CVPR 2023) prunes visual tokens at a few layers of the video encoder by the
head-averaged attention of the CLS query (and, optionally, in the fusion encoder by the text
[CLS] cross-attention). The kept count is ``ceil(rate * n)`` with Python float arithmetic, the kept
indices are sorted so the original order survives, and the CLS token is always kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["KeptTokens", "cls_attention_probs", "keep_count", "keep_top_tokens"]


def keep_count(rate: float, n: int) -> int:
    """Tokens kept out of ``n`` at ``rate``: ``ceil(rate * n)`` (the official rounding)."""
    return math.ceil(rate * n)


def cls_attention_probs(query: Tensor, keys: Tensor, bias: Tensor | None = None) -> Tensor:
    """Softmax attention of one query per head over ``keys`` (the row node sparsity scores).

    Args:
        query: ``(B, H, 1, d)`` the CLS query.
        keys: ``(B, H, N, d)``.
        bias: additive ``(B|1, H, 1, N)`` logits bias (relative position bias, key mask).

    Returns:
        ``(B, H, N)`` attention probabilities.
    """
    logits = query @ keys.transpose(-1, -2) / math.sqrt(query.shape[-1])
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1).squeeze(-2)


@dataclass
class KeptTokens:
    """Result of :func:`keep_top_tokens`.

    Attributes:
        tokens: ``(B, 1 + k, D)`` CLS followed by the kept tokens in their original order.
        kept: ``(B, k)`` indices of the kept tokens among the input's non-CLS tokens.
    """

    tokens: Tensor
    kept: Tensor


def keep_top_tokens(
    tokens: Tensor,
    scores: Tensor,
    rate: float,
    strategy: str = "cls_attn",
    generator: torch.Generator | None = None,
) -> KeptTokens:
    """Keep the ``ceil(rate * n)`` highest-scoring non-CLS tokens (always keep token 0).

    Args:
        tokens: ``(B, 1 + n, D)`` with the CLS token first.
        scores: ``(B, n)`` score of every non-CLS token (head-mean CLS attention).
        rate: fraction kept, in (0, 1].
        strategy: ``"cls_attn"`` (top scores) or ``"random"`` (a random subset per sample).
        generator: random source for ``"random"``.
    """
    n = tokens.shape[1] - 1
    k = keep_count(rate, n)
    if strategy == "random":
        scores = torch.rand(scores.shape, generator=generator, device=scores.device)
    elif strategy != "cls_attn":
        raise ValueError(f"token_keep_strategy={strategy!r}: expected 'cls_attn' or 'random'")
    kept = scores.topk(k, dim=-1).indices.sort(dim=-1).values
    body = tokens[:, 1:].gather(1, kept[..., None].expand(-1, -1, tokens.shape[-1]))
    return KeptTokens(torch.cat([tokens[:, :1], body], dim=1), kept)
