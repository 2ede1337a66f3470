"""Block-sparse self-attention (SViTT edge sparsity) behind one layout object.

SViTT (Li et al., CVPR 2023) sparsifies the video encoder's attention: the non-CLS tokens are cut
into blocks of ``block_size`` consecutive tokens; query block ``m`` attends to the CLS token, its
``local`` neighbouring blocks and ``random`` randomly drawn blocks; the CLS query attends densely
to everything (its attention row also scores tokens for node sparsity).

:class:`BlockSparse` describes the pattern; :func:`block_sparse_attention` computes it with an
interchangeable backend:

* ``"dense"`` -- full attention over all tokens (the exact baseline SViTT compares against);
* ``"gather"`` -- pure PyTorch: key/value blocks are gathered per query block and attended with
  ``scaled_dot_product_attention`` (CPU and GPU, trains);
* ``"flex"`` -- FlexAttention with a block mask built from the same block table.

Faithfulness: like the official code, the token sequence is zero-padded to a whole number of
blocks and the padded key slots are *not* masked (logit ``0 + bias(query, CLS)``, value 0).
``BlockSparse(mask_padding=True)`` masks them instead (a fix; it changes outputs). The random
table is drawn with the official rule (``torch.rand((nb, nb))``, local entries zeroed, top-k,
sorted), one table per layer and forward, shared by the batch and heads; a recorded table can be
passed instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from leanvl.layers.token_keep import cls_attention_probs

__all__ = ["BACKENDS", "BlockSparse", "block_sparse_attention", "dense_attention"]

BACKENDS = ("dense", "gather", "flex")
BiasFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class BlockSparse:
    """Edge-sparsity pattern of SViTT's video encoder.

    Attributes:
        block_size: tokens per block (56 in SViTT = 4 patch rows at 224^2).
        local: neighbouring blocks attended by each query block, centred on itself (odd; 1 =
            only its own block, the released configs).
        random: random blocks per query block, redrawn every layer and forward.
        mask_padding: mask the zero-padded key slots of the last block. ``False`` reproduces the
            official model (they take softmax mass); ``True`` is the fixed variant.
        mirrored_local: reproduce the official quirk for ``local > 1``: for local offset ``r``
            the keys come from block ``m + r`` but the values and bias positions from block
            ``m - r``. No effect at ``local = 1`` (every released config); ``False`` uses
            ``m + r`` consistently (the fix).
    """

    block_size: int = 56
    local: int = 1
    random: int = 3
    mask_padding: bool = False
    mirrored_local: bool = True

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"BlockSparse.block_size={self.block_size}: must be >= 1")
        if self.local < 1 or self.local % 2 == 0:
            raise ValueError(f"BlockSparse.local={self.local}: must be odd and >= 1")
        if self.random < 0:
            raise ValueError(f"BlockSparse.random={self.random}: must be >= 0")

    def num_blocks(self, num_tokens: int) -> int:
        """Blocks covering ``num_tokens`` non-CLS tokens (the last one zero-padded)."""
        return math.ceil(num_tokens / self.block_size)

    def local_offsets(self) -> list[int]:
        """Block offsets ``-(local//2) .. local//2`` of the local window."""
        half = self.local // 2
        return list(range(-half, half + 1))

    def draw_random_blocks(
        self,
        num_blocks: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Random block table ``(num_blocks, random)`` by the official rule.

        ``rand = torch.rand(nb, nb)``; the local entries are zeroed; the ``random`` largest
        entries per row are taken and sorted. With ``generator=None`` the global generator is
        used, so ``torch.manual_seed(s)`` before a forward reproduces the official draw.
        """
        # Fewer blocks than ``random`` (short clips, late layers): take them all. The official
        # code raises in topk there; nowhere else does this differ from it.
        count = min(self.random, num_blocks)
        rand = torch.rand((num_blocks, num_blocks), device=device, generator=generator)
        rows = torch.arange(num_blocks, device=rand.device)
        for r in self.local_offsets():
            rand[rows, (rows + r) % num_blocks] = 0
        return rand.topk(count, dim=-1).indices.sort(dim=-1).values

    def key_blocks(self, random_blocks: Tensor, values: bool = False) -> Tensor:
        """``(nb, local + random)`` blocks of every query block: local ones, then random.

        Args:
            random_blocks: the ``(nb, random)`` random table.
            values: the blocks whose values and bias positions are used (differs from the key
                blocks only with ``mirrored_local`` and ``local > 1``).
        """
        nb = random_blocks.shape[0]
        rows = torch.arange(nb, device=random_blocks.device)
        sign = -1 if values and self.mirrored_local else 1
        local = torch.stack([(rows + sign * r) % nb for r in self.local_offsets()], dim=1)
        return torch.cat([local, random_blocks.to(local.device)], dim=1)


def dense_attention(
    q: Tensor, k: Tensor, v: Tensor, positions: Tensor, rel_bias: BiasFn | None
) -> tuple[Tensor, Tensor]:
    """Full attention with the relative bias; returns (output, CLS attention ``(B, H, S)``).

    Args:
        q, k, v: ``(B, H, S, d)``, token 0 is CLS.
        positions: ``(B|1, S)`` original token positions (for the bias).
        rel_bias: ``rel_bias(query_pos, key_pos) -> (..., H, Nq, Nk)`` or None.
    """
    bias = rel_bias(positions, positions) if rel_bias is not None else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    cls_bias = bias[:, :, :1] if bias is not None else None
    return out, cls_attention_probs(q[:, :, :1], k, cls_bias)


def _gather_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    positions: Tensor,
    rel_bias: BiasFn | None,
    layout: BlockSparse,
    key_blocks: Tensor,
    value_blocks: Tensor,
) -> tuple[Tensor, Tensor]:
    b, h, s, d = q.shape
    n = s - 1
    nb, bs = layout.num_blocks(n), layout.block_size
    pad = nb * bs - n
    # CLS row: dense over every key.
    cls_bias = rel_bias(positions[:, :1], positions) if rel_bias is not None else None
    cls_probs = cls_attention_probs(q[:, :, :1], k, cls_bias)
    cls_out = (cls_probs[:, :, None] @ v).to(q.dtype)

    def blocks(x: Tensor) -> Tensor:
        return F.pad(x[:, :, 1:], (0, 0, 0, pad)).reshape(b, h, nb, bs, d)

    qb, kb, vb = blocks(q), blocks(k), blocks(v)
    n_keys = key_blocks.shape[1] * bs
    k_sel = kb[:, :, key_blocks].reshape(b, h, nb, n_keys, d)
    v_sel = vb[:, :, value_blocks].reshape(b, h, nb, n_keys, d)
    k_sel = torch.cat([k[:, :, None, :1].expand(b, h, nb, 1, d), k_sel], dim=3)
    v_sel = torch.cat([v[:, :, None, :1].expand(b, h, nb, 1, d), v_sel], dim=3)
    bias = None
    if rel_bias is not None:
        # Padded slots get position 0: their bias is the patch->CLS entry, as officially.
        pos = F.pad(positions[:, 1:], (0, pad)).reshape(-1, nb, bs)
        key_pos = pos[:, value_blocks].reshape(-1, nb, n_keys)
        key_pos = torch.cat([torch.zeros_like(key_pos[..., :1]), key_pos], dim=-1)
        bias = rel_bias(pos, key_pos).transpose(1, 2)  # (B|1, H, nb, bs, 1 + n_keys)
    if layout.mask_padding and pad:
        valid = (torch.arange(nb * bs, device=q.device) < n).reshape(nb, bs)[key_blocks]
        valid = torch.cat([valid.new_ones(nb, 1), valid.reshape(nb, n_keys)], dim=1)
        keep = torch.zeros(valid.shape, dtype=q.dtype, device=q.device)
        keep = keep.masked_fill(~valid, float("-inf"))[:, None, :]
        bias = keep if bias is None else bias + keep
    out = F.scaled_dot_product_attention(qb, k_sel, v_sel, attn_mask=bias)
    out = out.reshape(b, h, nb * bs, d)[:, :, :n]
    return torch.cat([cls_out, out], dim=2), cls_probs


def block_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    positions: Tensor,
    rel_bias: BiasFn | None,
    layout: BlockSparse | None,
    random_blocks: Tensor | None = None,
    backend: str = "gather",
) -> tuple[Tensor, Tensor]:
    """SViTT attention over ``1 + n`` tokens (CLS first) with the chosen backend.

    Args:
        q, k, v: ``(B, H, S, d)``.
        positions: ``(B|1, S)`` original positions of the tokens (0 = CLS) for ``rel_bias``.
        rel_bias: ``rel_bias(query_pos, key_pos) -> (..., H, Nq, Nk)`` additive bias, or None.
        layout: the sparsity pattern; None means dense attention.
        random_blocks: ``(nb, random)`` random block table (required when ``layout`` is set).
        backend: ``"dense"``, ``"gather"`` or ``"flex"``; ``"dense"`` ignores ``layout``.

    Returns:
        The attention output ``(B, H, S, d)`` and the CLS query's attention ``(B, H, S)``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r}: expected one of {BACKENDS}")
    if layout is None or backend == "dense":
        return dense_attention(q, k, v, positions, rel_bias)
    if random_blocks is None:
        raise ValueError("block_sparse_attention: random_blocks is required with a layout")
    nb = layout.num_blocks(q.shape[2] - 1)
    if random_blocks.shape != (nb, min(layout.random, nb)):
        raise ValueError(
            f"random block table of shape {tuple(random_blocks.shape)}, expected "
            f"({nb}, {min(layout.random, nb)}) for {q.shape[2] - 1} tokens in blocks of "
            f"{layout.block_size}"
        )
    random_blocks = random_blocks.to(q.device)
    key_blocks = layout.key_blocks(random_blocks)
    if backend == "flex":
        from leanvl.layers.block_sparse_flex import flex_block_attention

        if layout.local > 1 and layout.mirrored_local:
            raise ValueError(
                "the flex backend cannot mirror local values (BlockSparse.mirrored_local with "
                f"local={layout.local}); use the gather backend or mirrored_local=False"
            )
        return flex_block_attention(q, k, v, positions, rel_bias, layout, key_blocks)
    value_blocks = layout.key_blocks(random_blocks, values=True)
    return _gather_attention(q, k, v, positions, rel_bias, layout, key_blocks, value_blocks)
