"""Sparse video BEiT: joint space-time attention with 3D relative bias, edge and node sparsity.

The video encoder of SViTT (Li et al., "SViTT: Temporal Learning of Sparse Video-Text
Transformers", CVPR 2023), a BEiT (Bao et al., ICLR 2022) whose layers attend over all patches
of all frames at once. Frames are patchified independently by one Conv2d, a single CLS token is
prepended, and there is no absolute or temporal position embedding: position comes only from a
per-layer 3D relative bias (:mod:`leanvl.layers.rel_pos_3d`). Attention may be block-sparse
(:mod:`leanvl.layers.block_sparse`) and tokens may be pruned by CLS attention after chosen layers
(:mod:`leanvl.layers.token_keep`). With no layout and ``keep_rate=1`` it is a dense BEiT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leanvl.layers.block_sparse import BlockSparse, block_sparse_attention
from leanvl.layers.rel_pos_3d import RelativePositionBias3D
from leanvl.layers.token_keep import keep_top_tokens

__all__ = ["SparseBEiTBlock", "SparseBEiTConfig", "SparseVideoBEiT", "VideoOutput", "drop_path"]


@dataclass(frozen=True)
class SparseBEiTConfig:
    """Sizes and sparsity of :class:`SparseVideoBEiT` (built from the model family's config).

    Attributes:
        image_size, patch_size: square frame side and patch side.
        num_frames: frames the relative position tables cover.
        width, depth, heads, mlp: hidden size, layers, attention heads, MLP hidden size.
        eps: LayerNorm epsilon.
        layer_scale_init: initial layer-scale value; 0 = no layer scale.
        drop_path_rate: stochastic depth of the last layer (linear from 0).
        layout: block-sparse pattern, or None for dense attention.
        backend: attention backend (``"gather"``, ``"flex"``, ``"dense"``).
        keep_rate, drop_layers, keep_strategy: node sparsity (``keep_rate=1``: off).
        pool: build the mean-pooling LayerNorm (BEiT pooler).
    """

    image_size: int
    patch_size: int
    num_frames: int
    width: int
    depth: int
    heads: int
    mlp: int
    eps: float = 1e-12
    layer_scale_init: float = 0.1
    drop_path_rate: float = 0.0
    layout: BlockSparse | None = None
    backend: str = "gather"
    keep_rate: float = 1.0
    drop_layers: tuple[int, ...] = ()
    keep_strategy: str = "cls_attn"
    pool: bool = True

    @property
    def grid(self) -> int:
        """Patches per frame side."""
        return self.image_size // self.patch_size


@dataclass
class VideoOutput:
    """Result of :meth:`SparseVideoBEiT.forward` / ``SViTT.encode_video``.

    Attributes:
        tokens: ``(B, 1 + n, D)`` output tokens (SViTT: after ``vision_norm``, for fusion).
        pooled: ``(B, D)`` BEiT pooler output (LayerNorm of the mean patch token), for ITC.
        kept_token_idx: per drop layer, ``(B, k)`` ORIGINAL patch indices of surviving tokens.
        random_blocks: per layer, the ``(nb, random)`` block table used (empty when dense).
        hidden_states: embeddings then every layer's output, if requested.
    """

    tokens: Tensor
    pooled: Tensor
    kept_token_idx: list[Tensor] = field(default_factory=list)
    random_blocks: list[Tensor] = field(default_factory=list)
    hidden_states: list[Tensor] = field(default_factory=list)


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero the residual branch of whole samples with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class SparseBEiTBlock(nn.Module):
    """Pre-LN BEiT block with layer scale, 3D relative bias and (block-sparse) attention."""

    def __init__(self, cfg: SparseBEiTConfig, drop_path_rate: float) -> None:
        super().__init__()
        d = cfg.width
        if d % cfg.heads:
            raise ValueError(f"width={d} is not divisible by heads={cfg.heads}")
        self.heads, self.drop_path_rate = cfg.heads, drop_path_rate
        self.attn_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d)
        self.rel_pos = RelativePositionBias3D(cfg.num_frames, cfg.grid, cfg.grid, cfg.heads)
        self.proj = nn.Linear(d, d)
        scale = cfg.layer_scale_init
        self.gamma_attn = nn.Parameter(torch.full((d,), scale)) if scale > 0 else None
        self.mlp_norm = nn.LayerNorm(d, eps=cfg.eps)
        self.fc1 = nn.Linear(d, cfg.mlp)
        self.fc2 = nn.Linear(cfg.mlp, d)
        self.gamma_mlp = nn.Parameter(torch.full((d,), scale)) if scale > 0 else None

    def forward(
        self,
        x: Tensor,
        positions: Tensor,
        layout: BlockSparse | None,
        random_blocks: Tensor | None,
        backend: str,
    ) -> tuple[Tensor, Tensor]:
        """Returns the block output and the CLS attention ``(B, H, S)`` of this layer."""
        b, s, d = x.shape
        h = self.attn_norm(x)

        def split(t: Tensor) -> Tensor:
            return t.reshape(b, s, self.heads, -1).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        a, cls_probs = block_sparse_attention(
            q, k, v, positions, self.rel_pos, layout, random_blocks, backend
        )
        a = self.proj(a.transpose(1, 2).reshape(b, s, d))
        if self.gamma_attn is not None:
            a = self.gamma_attn * a
        x = x + drop_path(a, self.drop_path_rate, self.training)
        m = self.fc2(F.gelu(self.fc1(self.mlp_norm(x))))
        if self.gamma_mlp is not None:
            m = self.gamma_mlp * m
        return x + drop_path(m, self.drop_path_rate, self.training), cls_probs


class SparseVideoBEiT(nn.Module):
    """Sparse BEiT over joint space-time tokens: frame patches + one CLS, no position embedding."""

    def __init__(self, cfg: SparseBEiTConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.width
        self.patch_embed = nn.Conv2d(3, d, cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(SparseBEiTBlock(cfg, r) for r in rates)
        # The VQA model has no pooler (official: ``vision_encoder.pooler = None``).
        self.pool_norm = nn.LayerNorm(d, eps=cfg.eps) if cfg.pool else None

    def embed(self, video: Tensor) -> Tensor:
        """``(B, T, 3, H, W)`` -> ``(B, 1 + T*h*w, D)``: CLS, then patches frame- and row-major."""
        cfg = self.config
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video of shape {tuple(video.shape)}: expected (B, T, 3, H, W)")
        b, t, _, hgt, wid = video.shape
        if (hgt, wid) != (cfg.image_size, cfg.image_size):
            raise ValueError(f"frames of {hgt}x{wid}: image_size={cfg.image_size}")
        if t > cfg.num_frames:
            raise ValueError(f"{t} frames: the position tables cover num_frames={cfg.num_frames}")
        x = self.patch_embed(video.flatten(0, 1)).flatten(2).transpose(1, 2)
        x = x.reshape(b, -1, x.shape[-1])
        return torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)

    def forward(
        self,
        video: Tensor,
        random_blocks: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[Tensor, VideoOutput]:
        """Encode a clip; returns the last hidden state and a partly filled :class:`VideoOutput`."""
        cfg, layout = self.config, self.config.layout
        x = self.embed(video)
        out = VideoOutput(tokens=x, pooled=x, hidden_states=[x] if output_hidden_states else [])
        positions = torch.arange(x.shape[1], device=x.device)[None]
        sparse = layout is not None and cfg.backend != "dense"
        if sparse and random_blocks is not None and len(random_blocks) != len(self.blocks):
            raise ValueError(
                f"{len(random_blocks)} random block tables for {len(self.blocks)} layers"
            )
        for i, block in enumerate(self.blocks):
            table = None
            if sparse:
                nb = layout.num_blocks(x.shape[1] - 1)
                table = (
                    random_blocks[i].to(x.device)
                    if random_blocks is not None
                    else layout.draw_random_blocks(nb, x.device, generator)
                )
                out.random_blocks.append(table)
            x, cls_probs = block(x, positions, layout, table, cfg.backend)
            if i in cfg.drop_layers and cfg.keep_rate < 1:
                kept = keep_top_tokens(
                    x,
                    cls_probs[:, :, 1:].mean(1),
                    cfg.keep_rate,
                    cfg.keep_strategy,
                    generator,
                )
                body = positions[:, 1:].expand(x.shape[0], -1).gather(1, kept.kept)
                positions = torch.cat([torch.zeros_like(body[:, :1]), body], dim=1)
                x = kept.tokens
                out.kept_token_idx.append(body - 1)
            if output_hidden_states:
                out.hidden_states.append(x)
        if self.pool_norm is not None:
            out.pooled = self.pool_norm(x[:, 1:].mean(1))
        return x, out
