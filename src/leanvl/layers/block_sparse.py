"""Block-sparse self-attention (SViTT edge sparsity) behind one layout object.

SViTT (Li et al., CVPR 2023) sparsifies the video encoder's attention: the non-CLS tokens are cut
into blocks of ``block_size`` consecutive tokens; query block ``m`` attends to the CLS token, its
``local`` neighbouring blocks and ``random`` randomly drawn blocks; the CLS query attends densely
to everything (its attention row also scores tokens for node sparsity).

:class:`BlockSparse` describes the pattern; :func:`block_sparse_attention` computes it with an
interchangeable backend:

* ``"dense"`` -- full attention over all tokens (the exact baseline SViTT compares against);
* ``"gather"`` -- pure PyTorch: key/value blocks are gathered per query block and attended by
  :func:`gathered_attention`, with a backward written for CPU training (CPU and GPU, trains);
* ``"flex"`` -- FlexAttention with a block mask built from the same block table.

Faithfulness: like the official code, the token sequence is zero-padded to a whole number of
blocks and the padded key slots are *not* masked (logit ``0 + bias(query, CLS)``, value 0).
``BlockSparse(mask_padding=True)`` masks them instead (a fix; it changes outputs). The random
table is drawn with the official rule (``torch.rand((nb, nb))``, local entries zeroed, top-k,
sorted), one table per layer and forward, shared by the batch and heads; a recorded table can be
passed instead.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.overrides import handle_torch_function, has_torch_function

from leanvl.layers.token_keep import cls_attention_probs

__all__ = [
    "BACKENDS",
    "BlockSparse",
    "block_sparse_attention",
    "dense_attention",
    "gathered_attention",
]

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


def _slot_index(blocks: Tensor, block_size: int) -> Tensor:
    """``(nb, 1 + len * block_size)`` slots of ``[CLS, blocks...]`` in the padded sequence.

    Slot 0 is the CLS token, slot ``1 + j`` the ``j``-th (possibly padded) non-CLS token, so
    one ``index_select`` gathers the CLS key and every listed block at once.
    """
    slots = 1 + blocks[..., None] * block_size + torch.arange(block_size, device=blocks.device)
    return torch.cat([slots.new_zeros(blocks.shape[0], 1), slots.flatten(1)], dim=1)


class _GatheredAttention(torch.autograd.Function):
    """``softmax(q @ kᵀ + bias) @ v`` per query block over its gathered keys (the ``gather`` core).

    Shapes: ``q (B, H, nb, bs, d)`` (already scaled), ``k, v (B, H, nb, L, d)``, ``bias``
    broadcastable to ``(B, H, nb, bs, L)`` (requires grad: the relative position table),
    ``mask`` a boolean of masked keys (no gradient). The backward is written out because
    autograd's ``matmul`` backward returns the key gradient as a transposed view, which the
    ``index_select`` backward then copies (a strided copy of the layer's largest tensor); here
    it is ``d_logitsᵀ @ q``, already in the gathered layout, and the bias is added in place.
    The arithmetic is the autograd one (same products, the fused softmax backward).
    Not twice differentiable.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None
    ) -> Tensor:
        logits = q @ k.transpose(-1, -2)
        if bias is not None:
            logits += bias
        if mask is not None:
            logits.masked_fill_(mask, float("-inf"))
        probs = logits.softmax(dim=-1)
        ctx.save_for_backward(q, k, v, probs)
        ctx.bias_shape = None if bias is None else bias.shape
        return probs @ v

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, probs = ctx.saved_tensors
        need_q, need_k, need_v, need_bias, _ = ctx.needs_input_grad
        grad_v = probs.transpose(-1, -2) @ grad if need_v else None
        grad_probs = grad @ v.transpose(-1, -2)
        # The softmax backward autograd itself uses (fused: one pass, one new tensor).
        grad_logits = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)
        del grad_probs
        grad_q = grad_logits @ k if need_q else None
        grad_k = grad_logits.transpose(-1, -2) @ q if need_k else None
        grad_bias = grad_logits.sum_to_size(ctx.bias_shape) if need_bias else None
        return grad_q, grad_k, grad_v, grad_bias, None


def gathered_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """``softmax(q @ kᵀ + bias) @ v`` of every query block over its gathered keys.

    The attention core of the ``gather`` backend (:class:`_GatheredAttention`).

    * It runs in float32 at least, outside autocast, and returns q's dtype. Half and bfloat16
      operands are upcast, as the math path of ``scaled_dot_product_attention`` does: accurate
      logits, and CPUs without bfloat16 matrix units multiply bfloat16 several times slower.
      Autocast would reach only the forward's products, leaving saved tensors and gradients in
      different dtypes.
    * Like ``scaled_dot_product_attention`` it dispatches ``__torch_function__``, so a
      ``TorchFunctionMode`` (the FLOP counter of :mod:`leanvl.bench.flops`) sees one attention
      call with these shapes rather than its inner products.

    Args:
        q: ``(B, H, nb, bs, d)`` query blocks, already scaled by ``1/sqrt(d)``.
        k, v: ``(B, H, nb, L, d)`` the keys and values gathered for each query block.
        bias: additive logits bias broadcastable to ``(B, H, nb, bs, L)``, or None.
        mask: boolean, broadcastable to the same shape, True where a key is masked; or None.

    Returns:
        ``(B, H, nb, bs, d)``.
    """
    if has_torch_function((q, k, v)):
        return handle_torch_function(gathered_attention, (q, k, v), q, k, v, bias, mask)
    dtype = torch.promote_types(q.dtype, torch.float32)
    args = (q.to(dtype), k.to(dtype), v.to(dtype), None if bias is None else bias.to(dtype), mask)
    device = q.device.type
    no_autocast = (
        torch.autocast(device, enabled=False)
        if torch.amp.is_autocast_available(device)
        else contextlib.nullcontext()
    )
    with no_autocast:
        return _GatheredAttention.apply(*args).to(q.dtype)


def _gather_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    positions: Tensor,
    rel_bias: BiasFn | None,
    layout: BlockSparse,
    key_blocks: Tensor,
    value_blocks: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """The ``gather`` backend (``value_blocks=None``: values come from ``key_blocks`` too).

    Cost notes (CPU training): keys, values and bias positions are gathered with one
    ``index_select`` over CLS-first slots (its backward is an ``index_add_``; advanced indexing
    plus ``cat`` cost a serial ``index_put_`` and extra copies); the bias keeps the batch
    dimension of ``positions`` (1 until tokens are pruned) and is broadcast; attention is
    written out (:func:`gathered_attention`) because ``scaled_dot_product_attention`` with a
    bias that requires grad falls back to its unfused math path on CPU, which also scales q
    and k separately, checks the mask for fully masked rows and copies the key gradient.
    Results equal ``scaled_dot_product_attention`` with the same bias up to float32 rounding
    (about 1e-6 relative).
    """
    b, h, s, d = q.shape
    n = s - 1
    nb, bs = layout.num_blocks(n), layout.block_size
    pad = nb * bs - n
    # CLS row: dense over every key.
    cls_bias = rel_bias(positions[:, :1], positions) if rel_bias is not None else None
    cls_probs = cls_attention_probs(q[:, :, :1], k, cls_bias)
    cls_out = (cls_probs[:, :, None] @ v).to(q.dtype)

    def padded(x: Tensor) -> Tensor:  # zero (position 0) slots up to whole blocks
        return F.pad(x, (0, 0, 0, pad) if x.ndim == 4 else (0, pad)) if pad else x

    key_slots = _slot_index(key_blocks, bs)
    value_slots = key_slots if value_blocks is None else _slot_index(value_blocks, bs)
    n_keys = key_slots.shape[1]
    # The scale 1/sqrt(d) is applied to q (S x d) rather than to the logits (S x n_keys);
    # contiguous once here rather than in each product that uses it.
    qb = (padded(q)[:, :, 1:] * d**-0.5).reshape(b, h, nb, bs, d).contiguous()
    k_sel = padded(k).index_select(2, key_slots.flatten()).view(b, h, nb, n_keys, d)
    v_sel = padded(v).index_select(2, value_slots.flatten()).view(b, h, nb, n_keys, d)
    bias = mask = None
    if rel_bias is not None:
        # Padded slots get position 0: their bias is the patch->CLS entry, as officially.
        pos = padded(positions)
        query_pos = pos[:, 1:].reshape(-1, nb, bs)
        key_pos = pos.index_select(1, value_slots.flatten()).view(-1, nb, n_keys)
        bias = rel_bias(query_pos, key_pos).transpose(1, 2)  # (B|1, H, nb, bs, 1 + n_keys)
    if layout.mask_padding and pad:
        mask = key_slots[:, None, :] > n
    out = gathered_attention(qb, k_sel, v_sel, bias, mask)
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
    value_blocks = None
    if layout.local > 1 and layout.mirrored_local:
        value_blocks = layout.key_blocks(random_blocks, values=True)
    return _gather_attention(q, k, v, positions, rel_bias, layout, key_blocks, value_blocks)
