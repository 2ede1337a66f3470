"""Pre-norm Vision Transformer parts: patch embedding, fused multi-head attention, MLP, block.

The block is the one of ViT (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021) as
timm 0.4 writes it: ``x += drop_path(proj(MHSA(LN1(x))))``, ``x += drop_path(MLP(LN2(x)))``.
Submodule names (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``,
``patch_embed.proj``) follow timm, so state dicts of models built on timm's ViT map one to one.

Attention is computed with :func:`torch.nn.functional.scaled_dot_product_attention` (fused
kernels on every backend); there is no hand-written softmax attention here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "DropPath", "Mlp", "PatchEmbed", "VitBlock", "key_padding_mask"]


def key_padding_mask(valid: torch.Tensor) -> torch.Tensor | None:
    """SDPA mask from a (B, N) key validity mask (True / nonzero = attend).

    Returns ``None`` when every key is valid, so that SDPA can take its unmasked fast path;
    otherwise a bool tensor of shape (B, 1, 1, N) that broadcasts over heads and queries.
    Padded positions stay queries (their outputs are computed and ignored downstream).
    """
    valid = valid.bool()
    if valid.device.type != "meta" and bool(valid.all()):
        return None
    return valid[:, None, None, :]


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``p``.

    Identity in eval mode or when ``p == 0``; kept samples are scaled by ``1 / (1 - p)``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop whole samples of ``x`` (B, ...) during training."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class PatchEmbed(nn.Module):
    """Non-overlapping patches of a (N, C, H, W) image batch projected to ``dim`` channels.

    Returns tokens (N, P, dim) in raster order (index = row * grid_w + col).
    """

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patchify and project ``images`` (N, C, H, W) -> (N, P, dim)."""
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused QKV projection and SDPA.

    Args:
        dim: token width.
        num_heads: number of heads; ``dim`` must be divisible by it.
        qkv_bias: bias on the QKV projection.
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over ``x`` (B, N, dim); ``mask`` is None or bool, broadcastable to
        (B, heads, N, N), True = attend (see :func:`key_padding_mask`)."""
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    """Two-layer feed-forward network ``fc2(drop(GELU(fc1(x))))`` with exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP token-wise."""
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class VitBlock(nn.Module):
    """Pre-norm transformer block (LayerNorm -> attention, LayerNorm -> MLP, residuals).

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: bias on the QKV projection.
        drop: dropout after the attention projection and inside the MLP.
        attn_drop: dropout on attention probabilities.
        drop_path: stochastic-depth probability of both residual branches.
        norm_eps: LayerNorm epsilon (1e-6 in timm's ViT).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the block on ``x`` (B, N, dim) with an optional SDPA ``mask``."""
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))
