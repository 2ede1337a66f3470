"""FlexAttention backend of SViTT's block-sparse attention (see :mod:`leanvl.layers.block_sparse`).

The token sequence ``[CLS, x_1..x_n]`` is zero-padded to ``1 + nb * block_size`` so that query
block ``m`` is a contiguous run of rows; a ``mask_mod`` allows the CLS key, the key blocks listed
in the block table, and (for the CLS query) every real key. The relative position bias is a
``score_mod`` that looks the table up from the tokens' original positions, so no ``(S, S)`` bias
is ever materialised. Padded key slots stay unmasked (zero key and value, bias of the CLS
position) exactly like the official code, unless ``BlockSparse.mask_padding`` is set.

On GPU the kernel is compiled (``torch.compile``) and only the allowed 128x128 tiles are
computed; on CPU FlexAttention runs its eager reference path (correct, not fast: use ``gather``
for CPU training). Block masks are cached per (shape, block table), which pays off when the
table is fixed (injected tables, evaluation with a fixed seed).

Difference from ``gather``: when a row's block table lists the same block twice (only when a
sequence has fewer than ``local + random`` blocks) ``gather`` counts it twice, as the official
code does, while a mask can only allow it once.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from leanvl.layers.token_keep import cls_attention_probs

__all__ = ["flex_block_attention"]

_MASKS: OrderedDict[tuple, object] = OrderedDict()
_CACHE_SIZE = 64
_COMPILED = None


def _flex(device: torch.device):
    """``flex_attention``: eager on CPU, compiled once (lazily) for accelerators.

    Under an active ``TorchFunctionMode`` (e.g. leanvl's FLOP counter) the eager function is
    used too: dynamo would have to trace the mode's Python hooks and fails on them.
    """
    global _COMPILED
    from torch.nn.attention.flex_attention import flex_attention

    if device.type == "cpu" or torch._C._is_torch_function_mode_enabled():
        return flex_attention
    if _COMPILED is None:
        _COMPILED = torch.compile(flex_attention, dynamic=False)
    return _COMPILED


def _block_mask(num_tokens: int, block_size: int, key_blocks: Tensor, mask_padding: bool):
    """The (cached) FlexAttention block mask of one layout and block table."""
    from torch.nn.attention.flex_attention import create_block_mask

    nb = key_blocks.shape[0]
    length = 1 + nb * block_size
    cache_key = (num_tokens, block_size, mask_padding, str(key_blocks.device))
    cache_key += (tuple(key_blocks.flatten().tolist()),)
    if cache_key in _MASKS:
        _MASKS.move_to_end(cache_key)
        return _MASKS[cache_key]
    allowed = torch.zeros(nb, nb, dtype=torch.bool, device=key_blocks.device)
    allowed[torch.arange(nb, device=key_blocks.device)[:, None], key_blocks] = True
    real = 1 + num_tokens

    def mask_mod(b, h, q_idx, kv_idx):
        q_block = torch.clamp((q_idx - 1) // block_size, min=0)
        kv_block = torch.clamp((kv_idx - 1) // block_size, min=0)
        in_blocks = (kv_idx == 0) | allowed[q_block, kv_block]
        if mask_padding:
            in_blocks = in_blocks & (kv_idx < real)
        return torch.where(q_idx == 0, kv_idx < real, in_blocks)

    mask = create_block_mask(mask_mod, None, None, length, length, device=key_blocks.device)
    _MASKS[cache_key] = mask
    if len(_MASKS) > _CACHE_SIZE:
        _MASKS.popitem(last=False)
    return mask


def flex_block_attention(q, k, v, positions, rel_bias, layout, key_blocks) -> tuple[Tensor, Tensor]:
    """Block-sparse attention with FlexAttention; same contract as ``block_sparse_attention``.

    Args:
        q, k, v: ``(B, H, S, d)``, token 0 is CLS.
        positions: ``(B|1, S)`` original token positions (0 = CLS).
        rel_bias: a :class:`~leanvl.layers.rel_pos_3d.RelativePositionBias3D` (needs ``index``
            and ``table``) or None.
        layout: the :class:`~leanvl.layers.block_sparse.BlockSparse` pattern.
        key_blocks: ``(nb, local + random)`` key blocks of every query block.
    """
    b, h, s, d = q.shape
    n = s - 1
    nb, bs = key_blocks.shape[0], layout.block_size
    pad = nb * bs - n
    qp, kp, vp = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    pos = F.pad(positions, (0, pad)).expand(b, -1).contiguous()  # padded slots -> CLS position
    mask = _block_mask(n, bs, key_blocks, layout.mask_padding)
    score_mod = None
    if rel_bias is not None:
        table = rel_bias.table

        def score_mod(score, bi, hi, q_idx, kv_idx):
            row = rel_bias.index(pos[bi, q_idx][None], pos[bi, kv_idx][None])[0, 0]
            return score + table[row, hi]

    attend = _flex(q.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        out = attend(qp, kp, vp, score_mod=score_mod, block_mask=mask)
    cls_bias = rel_bias(positions[:, :1], positions) if rel_bias is not None else None
    return out[:, :, :s], cls_attention_probs(q[:, :, :1], k, cls_bias)
