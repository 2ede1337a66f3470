"""Parts of the Spatio-Temporal Alignment Block (STAB) of Video-Panda.

Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free Video-Language Models",
CVPR 2025 (arXiv 2412.18609). The STAB replaces a pretrained video encoder by a ~45M-parameter
block that turns raw patches into LLM tokens. Its parts, as the official code computes them
(which differs from the paper in places; see ``docs/models/videopanda.md``):

* :class:`LocalSpatioTemporalEncoding` (LSTE): a temporal-only depthwise "local MHRA" residual
  (BatchNorm3d, 1x1x1 down, (3,1,1) depthwise, 1x1x1 up) followed by a 3x3x3 depthwise
  positional convolution residual (DPE), over one chunk of frames.
* :class:`ChunkContextAttention` (GSTRA): one learned query cross-attends to every LSTE token
  of a chunk, then a QuickGELU MLP; one global context vector per chunk.
* :class:`WindowAttentionPool` (LSD): s x s window attention pooling whose query is the
  projected window mean, plus the mean itself as residual.
* :class:`QueryAttentionPool` (FSRA): a learned query attends to the LSD tokens of one frame.

LSD and FSRA scale attention logits by ``width ** -0.5`` (not the head dimension): that is what
the official code does and what the released weights were trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ChunkContextAttention",
    "LocalSpatioTemporalEncoding",
    "QueryAttentionPool",
    "QuickGELU",
    "WindowAttentionPool",
]


def _check_heads(width: int, heads: int, name: str) -> None:
    if heads <= 0 or width % heads:
        raise ValueError(f"{name}={heads} must be positive and divide the STAB width {width}")


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the GELU approximation of CLIP / UniFormerV2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the activation elementwise."""
        return x * torch.sigmoid(1.702 * x)


class LocalSpatioTemporalEncoding(nn.Module):
    """LSTE: ``x1 = x + MHRA(x)``, ``out = x1 + DPE(x1)`` on a (B, C, T, H, W) chunk.

    ``MHRA`` is BatchNorm3d -> Conv3d 1x1x1 (C->R) -> depthwise Conv3d (3,1,1) -> Conv3d 1x1x1
    (R->C); it mixes only along time. ``DPE`` is a depthwise 3x3x3 Conv3d. Both run on the whole
    patch grid, padding bands and zero frames included, as in the official code.

    Args:
        width: channel count C.
        reduced: channels R of the MHRA bottleneck (official: ``int(C // 1.5)``).
    """

    def __init__(self, width: int, reduced: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm3d(width)
        self.reduce = nn.Conv3d(width, reduced, kernel_size=1)
        self.temporal = nn.Conv3d(
            reduced, reduced, kernel_size=(3, 1, 1), padding=(1, 0, 0), groups=reduced
        )
        self.expand = nn.Conv3d(reduced, width, kernel_size=1)
        self.dpe = nn.Conv3d(width, width, kernel_size=3, padding=1, groups=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a (B, C, T, H, W) chunk batch; same shape out."""
        x = x + self.expand(self.temporal(self.reduce(self.norm(x))))
        return x + self.dpe(x)


class ChunkContextAttention(nn.Module):
    """GSTRA: a learned query cross-attends to all tokens of a chunk, then an MLP.

    ``x = query + out(MHA(LN_q(query), LN_kv(tokens)))``, ``x = x + MLP(LN_mlp(x))`` with
    ``MLP = Linear(C, r*C) . QuickGELU . Dropout . Linear(r*C, C)``; standard head-dim scaling.

    Args:
        width: channel count C.
        heads: attention heads (must divide C).
        mlp_ratio: hidden size of the MLP as a multiple of C.
        dropout: dropout inside the MLP (training only).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        _check_heads(width, heads, "gstra_heads")
        self.heads = heads
        self.query = nn.Parameter(torch.zeros(1, 1, width))
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.out = nn.Linear(width, width)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = round(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), QuickGELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) tokens of B chunks -> (B, C) context vectors."""
        b, n, c = tokens.shape
        query = self.query.expand(b, 1, c)
        kv = self.norm_kv(tokens)
        q = self.q(self.norm_q(query)).view(b, 1, self.heads, -1).transpose(1, 2)
        k = self.k(kv).view(b, n, self.heads, -1).transpose(1, 2)
        v = self.v(kv).view(b, n, self.heads, -1).transpose(1, 2)
        attn = F.scaled_dot_product_attention(q, k, v)
        x = query + self.out(attn.transpose(1, 2).reshape(b, 1, c))
        x = x + self.mlp(self.norm_mlp(x))
        return x[:, 0]


def _pool_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, scale: float
) -> torch.Tensor:
    """Attention of one query per group over that group's keys, heads as contiguous channels.

    Shapes: ``q (..., C)``, ``k, v (..., J, C)`` -> ``(..., C)``.
    """
    *lead, c = q.shape
    d = c // heads
    qh = q.reshape(*lead, 1, heads, d)
    kh = k.reshape(*k.shape[:-1], heads, d)
    vh = v.reshape(*v.shape[:-1], heads, d)
    logits = (qh * scale * kh).sum(-1)  # (..., J, heads)
    weights = logits.softmax(dim=-2)
    return (weights.unsqueeze(-1) * vh).sum(-3).reshape(*lead, c)


class WindowAttentionPool(nn.Module):
    """LSD: downsample a (N, C, H, W) grid by ``stride`` with per-window attention pooling.

    For each ``stride x stride`` window: ``m`` = window mean, query = ``q(LN_q(m))``, keys and
    values = ``k/v(LN_kv(window tokens))`` (no bias; heads are contiguous channel groups),
    softmax over the window positions with scale ``C ** -0.5``; output ``m + proj(attended)``.

    Args:
        width: channel count C.
        stride: window size s (the official ``conv_stride``).
        heads: attention heads (must divide C).
    """

    def __init__(self, width: int, stride: int, heads: int) -> None:
        super().__init__()
        _check_heads(width, heads, "lsd_heads")
        self.stride = stride
        self.heads = heads
        self.scale = width**-0.5
        self.norm_q = nn.LayerNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.norm_kv = nn.LayerNorm(width)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, h*w, C) tokens in row-major order, ``h, w = H//s, W//s``."""
        s = self.stride
        n, c, height, width = grid.shape
        h, w = height // s, width // s
        grid = grid[:, :, : h * s, : w * s]
        mean = F.avg_pool2d(grid, s).flatten(2).transpose(1, 2)  # (N, h*w, C)
        windows = grid.reshape(n, c, h, s, w, s).permute(0, 2, 4, 3, 5, 1)
        windows = self.norm_kv(windows.reshape(n, h * w, s * s, c))
        attended = _pool_attention(
            self.q(self.norm_q(mean)), self.k(windows), self.v(windows), self.heads, self.scale
        )
        return mean + self.proj(attended)


class QueryAttentionPool(nn.Module):
    """FSRA: a learned query attends to (N, L, C) tokens -> (N, C) summaries.

    ``out = query + proj(attn(q(LN_q(query)), k/v(LN_kv(tokens))))`` with scale ``C ** -0.5``,
    no bias on q/k/v, heads as contiguous channel groups.

    Args:
        width: channel count C.
        heads: attention heads (must divide C).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        _check_heads(width, heads, "fsra_heads")
        self.heads = heads
        self.scale = width**-0.5
        self.query = nn.Parameter(torch.zeros(width))
        self.norm_q = nn.LayerNorm(width)
        self.q = nn.Linear(width, width, bias=False)
        self.norm_kv = nn.LayerNorm(width)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, C) tokens -> (N, C)."""
        kv = self.norm_kv(tokens)
        q = self.q(self.norm_q(self.query)).expand(tokens.shape[0], -1)
        attended = _pool_attention(q, self.k(kv), self.v(kv), self.heads, self.scale)
        return self.query + self.proj(attended)
