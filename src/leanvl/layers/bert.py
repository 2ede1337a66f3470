"""BERT text encoder and cross-attention fusion layers (ALBEF / Singularity / SViTT layout).

BERT (Devlin et al., NAACL 2019) with the ALBEF (Li et al., NeurIPS 2021) split: the first
``fusion_layer`` layers encode text alone, the remaining ones add a cross-attention block over
visual tokens between self-attention and the feed-forward block. Every sub-block is post-LN with a
residual. SViTT (Li et al., CVPR 2023) adds optional text-guided visual token pruning: after the
cross-attention of selected layers, only the visual tokens the text [CLS] attends to most are
passed on to the following layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leanvl.layers.token_keep import keep_top_tokens

__all__ = ["BertAttention", "BertEmbeddings", "BertEncoder", "BertLayer", "MLMHead"]


def padding_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive ``(B, 1, 1, L)`` attention bias from a 1/0 key mask: ``(1 - mask) * -10000``."""
    return ((1.0 - mask[:, None, None, :].to(dtype)) * -10000.0).to(dtype)


class BertEmbeddings(nn.Module):
    """Word + absolute position + token-type (always 0) embeddings, LayerNorm, dropout."""

    def __init__(
        self,
        vocab_size: int,
        hidden: int,
        max_positions: int,
        type_vocab: int,
        eps: float,
        drop: float,
    ) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab_size, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        self.token_type = nn.Embedding(type_vocab, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(drop)

    def forward(self, input_ids: Tensor) -> Tensor:
        """``(B, L)`` ids -> ``(B, L, D)``; positions ``0..L-1``, token type 0."""
        length = input_ids.shape[1]
        if length > self.position.num_embeddings:
            raise ValueError(
                f"text of {length} tokens exceeds max_position_embeddings="
                f"{self.position.num_embeddings}"
            )
        pos = torch.arange(length, device=input_ids.device)
        x = self.word(input_ids) + self.position(pos)[None] + self.token_type.weight[0]
        return self.dropout(self.norm(x))


class BertAttention(nn.Module):
    """Multi-head (self or cross) attention + output projection, residual, post-LN."""

    def __init__(
        self, hidden: int, heads: int, eps: float, drop: float, kv_width: int | None = None
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} attention heads")
        kv_width = kv_width or hidden
        self.heads, self.drop = heads, drop
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(kv_width, hidden)
        self.value = nn.Linear(kv_width, hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(drop)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.heads, -1).transpose(1, 2)

    def forward(
        self, x: Tensor, context: Tensor | None = None, bias: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``x`` to ``context`` (``x`` itself when None).

        Returns:
            The block output ``(B, L, D)`` and the first query's attention ``(B, H, Nk)``
            (the [CLS] row, used for text-guided token pruning).
        """
        context = x if context is None else context
        q, k, v = (
            self._split(self.query(x)),
            self._split(self.key(context)),
            self._split(self.value(context)),
        )
        drop = self.drop if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        a = a.transpose(1, 2).reshape(x.shape)
        logits = q[:, :, :1] @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if bias is not None:
            logits = logits + bias
        cls_probs = logits.softmax(-1).squeeze(-2)
        return self.norm(x + self.dropout(self.dense(a))), cls_probs


class BertLayer(nn.Module):
    """Self-attention, optional cross-attention over visual tokens, then the GELU MLP."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        intermediate: int,
        eps: float,
        drop: float,
        cross_width: int | None = None,
    ) -> None:
        super().__init__()
        self.self_attn = BertAttention(hidden, heads, eps, drop)
        self.cross_attn = (
            BertAttention(hidden, heads, eps, drop, kv_width=cross_width) if cross_width else None
        )
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(drop)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        """Self-attention + MLP (the text-only path)."""
        x = self.self_attn(x, bias=bias)[0]
        return self.mlp(x)

    def mlp(self, x: Tensor) -> Tensor:
        """The feed-forward sub-block with its residual and LayerNorm."""
        return self.norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


@dataclass
class FusionResult:
    """Output of :meth:`BertEncoder.fuse`.

    Attributes:
        hidden: ``(B, L, D)`` last hidden state of the text stream.
        kept_video: per pruning layer, ``(B, k)`` indices of the kept visual tokens among the
            non-CLS visual tokens entering that layer (indices into ``video[:, 1:]`` for the
            first pruning layer).
    """

    hidden: Tensor
    kept_video: list[Tensor] = field(default_factory=list)


class BertEncoder(nn.Module):
    """``num_layers`` BERT layers; layers ``>= fusion_layer`` cross-attend to visual tokens.

    Args:
        hidden, heads, intermediate, eps, drop: BERT sizes.
        num_layers: total layers (text-only + fusion).
        fusion_layer: index of the first layer with cross-attention.
        cross_width: width of the visual tokens.
        prune_layers: layer indices (over all layers) after whose cross-attention the visual
            tokens are pruned by text-[CLS] attention.
        prune_rate: fraction of visual tokens kept at each pruning layer (1 = off).
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        intermediate: int,
        eps: float,
        drop: float,
        num_layers: int,
        fusion_layer: int,
        cross_width: int,
        prune_layers: tuple[int, ...] = (),
        prune_rate: float = 1.0,
    ) -> None:
        super().__init__()
        self.fusion_layer = fusion_layer
        self.prune_layers, self.prune_rate = tuple(prune_layers), prune_rate
        self.layers = nn.ModuleList(
            BertLayer(
                hidden, heads, intermediate, eps, drop, cross_width if i >= fusion_layer else None
            )
            for i in range(num_layers)
        )

    def encode_text(self, x: Tensor, bias: Tensor | None) -> Tensor:
        """Run the text-only layers ``[0, fusion_layer)``."""
        for layer in self.layers[: self.fusion_layer]:
            x = layer(x, bias)
        return x

    def fuse(
        self,
        x: Tensor,
        bias: Tensor | None,
        video: Tensor,
        video_mask: Tensor | None = None,
        prune: bool = True,
    ) -> FusionResult:
        """Run the fusion layers ``[fusion_layer, num_layers)`` over text states ``x``.

        Args:
            x: ``(B, L, D)`` output of the text-only layers.
            bias: additive text self-attention bias ``(B, 1, 1, L)``.
            video: ``(B, Nv, Dv)`` visual tokens, CLS first.
            video_mask: ``(B, Nv)`` 1/0 mask (all ones when None).
            prune: apply text-guided pruning at ``prune_layers`` (when ``prune_rate < 1``).
        """
        if video_mask is None:
            video_mask = torch.ones(video.shape[:2], dtype=torch.long, device=video.device)
        kept_all = []
        for i, layer in enumerate(self.layers):
            if i < self.fusion_layer:
                continue
            x = layer.self_attn(x, bias=bias)[0]
            x, cls_probs = layer.cross_attn(x, video, padding_bias(video_mask, x.dtype))
            if prune and i in self.prune_layers and self.prune_rate < 1:
                kept = keep_top_tokens(video, cls_probs[:, :, 1:].mean(1), self.prune_rate)
                mask_body = video_mask[:, 1:].gather(1, kept.kept)
                video, video_mask = kept.tokens, torch.cat([video_mask[:, :1], mask_body], 1)
                kept_all.append(kept.kept)
            x = layer.mlp(x)
        return FusionResult(x, kept_all)


class MLMHead(nn.Module):
    """BERT masked-LM head: dense + GELU + LayerNorm, decoder tied to the word embeddings."""

    def __init__(self, hidden: int, vocab_size: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: Tensor, word_embeddings: Tensor) -> Tensor:
        """``(B, L, D)`` -> ``(B, L, vocab)`` logits using the (tied) word embedding matrix."""
        return F.linear(self.norm(F.gelu(self.dense(x))), word_embeddings, self.bias)
