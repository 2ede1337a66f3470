"""FlexAttention backend of SViTT's block-sparse attention (see :mod:`leanvl.layers.block_sparse`).

The token sequence ``[CLS, x_1..x_n]`` is zero-padded to ``1 + nb * block_size`` so that query
block ``m`` is a contiguous run of rows; a ``mask_mod`` allows the CLS key, the key blocks listed
in the block table, and (for the CLS query) every real key. The relative position bias is a
``score_mod`` that looks the table up from the tokens' original positions, so no ``(S, S)`` bias
is ever materialised. Padded key slots stay unmasked (zero key and value, bias of the CLS
position) exactly like the official code, unless ``BlockSparse.mask_padding`` is set.

Two layouts:

* **GPU** (compiled): the sequence above with the kernel's 128x128 tiles. A 56-token block is
  not a tile, so a tile spans parts of several blocks and more tiles are computed than the
  blocks need. Block masks come from ``create_block_mask`` and are cached per (shape, block
  table), which pays off when the table is fixed (injected tables, a fixed evaluation seed).
* **CPU** (tile-aligned, :func:`_flex_tiled`): ``[CLS, block_size - 1 masked slots, block 0,
  block 1, ...]`` with ``block_size``-token tiles, so each query block is exactly one tile and
  the kernel computes only the listed blocks plus the CLS row and column. The block mask is
  built from the block table directly (``create_block_mask`` evaluates the mask token by token:
  about a second per table on CPU, and the random blocks change every layer). Inference only:
  FlexAttention has no CPU backward, so a call that needs a gradient raises (train with
  ``gather``). ``gather`` is still the faster CPU backend (see docs/models/svitt.md).

Compiled kernels are kept per token count (up to ``_RECOMPILE_LIMIT``); ``LEANVL_FLEX_EAGER=1``
forces the eager reference.

Difference from ``gather``: when a row's block table lists the same block twice (only when a
sequence has fewer than ``local + random`` blocks) ``gather`` counts it twice, as the official
code does, while a mask can only allow it once.
"""

from __future__ import annotations

import os
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
_RECOMPILE_LIMIT = 64
"""Kernels kept per process: one per (token count, dtype, device, grad). SViTT has 4 token counts
per forward (before and after each token drop) for each frame count, past dynamo's default 8,
after which it would silently run the eager reference."""


def _flex(compiled: bool):
    """``flex_attention``, compiled once (lazily) when ``compiled``, else the eager reference.

    ``LEANVL_FLEX_EAGER=1`` forces the eager reference (debugging; the test suite, where each
    new shape would cost a CPU compilation of 10-30 s).

    Under an active ``TorchFunctionMode`` (e.g. leanvl's FLOP counter) the eager function is
    used: dynamo would have to trace the mode's Python hooks and fails on them.
    """
    global _COMPILED
    from torch.nn.attention.flex_attention import flex_attention

    if (
        not compiled
        or os.environ.get("LEANVL_FLEX_EAGER") == "1"
        or torch._C._is_torch_function_mode_enabled()
    ):
        return flex_attention
    if _COMPILED is None:
        kernel = torch.compile(flex_attention, dynamic=False)

        def compiled_flex(*args, **kwargs):
            with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT):
                return kernel(*args, **kwargs)

        _COMPILED = compiled_flex
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


def _bias_score_mod(rel_bias, pos: Tensor):
    """``score_mod`` adding the relative position bias of the tokens' original positions
    ``pos`` ``(B, L)`` (None without a bias): no ``(L, L)`` bias is materialised."""
    if rel_bias is None:
        return None
    table = rel_bias.table

    def score_mod(score, bi, hi, q_idx, kv_idx):
        row = rel_bias.index(pos[bi, q_idx][None], pos[bi, kv_idx][None])[0, 0]
        return score + table[row, hi]

    return score_mod


def _attend(q: Tensor, k: Tensor, v: Tensor, score_mod, mask) -> Tensor:
    """The compiled kernel (or the eager reference, see :func:`_flex`) on the laid-out tokens."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        return _flex(compiled=True)(q, k, v, score_mod=score_mod, block_mask=mask)


def _compact(values: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: how many ``values`` are kept, and the kept ones first (``(rows, m)`` each)."""
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    return keep.sum(1), torch.gather(values, 1, order)


def _tile_block_mask(n: int, layout, key_blocks: Tensor, tile: int, rows_mod, device):
    """Block mask of the tile-aligned layout, built from the block table (no mask evaluation).

    Tile 0 holds the CLS token and masked slots; tile ``1 + m`` holds block ``m`` (and masked
    slots when ``tile > block_size``). Query tile 0 visits every tile through ``rows_mod``;
    query tile ``1 + m`` visits tile 0 and the tiles of its table row, in full when the tile is
    exactly the block (no masked slot, and not the padded last block when padding is masked),
    else through ``rows_mod``.
    """
    from torch.nn.attention.flex_attention import BlockMask

    nb, bs = key_blocks.shape[0], layout.block_size
    nt, m = nb + 1, key_blocks.shape[1]
    tiles = key_blocks.sort(dim=1).values + 1
    first = torch.ones_like(tiles, dtype=torch.bool)
    first[:, 1:] = tiles[:, 1:] != tiles[:, :-1]  # a table may list a block twice
    if tile > bs:  # every tile has masked slots
        partial = torch.ones_like(tiles, dtype=torch.bool)
    else:  # only the padded last block, when its padding is masked
        partial = (tiles == nb) & (layout.mask_padding and nb * bs > n)
    n_full, full = _compact(tiles, first & ~partial)
    n_part, part = _compact(tiles, first & partial)
    i32 = {"dtype": torch.int32, "device": device}
    kv_num = torch.empty(1, 1, nt, **i32)
    kv_num[0, 0, 0] = nt
    kv_num[0, 0, 1:] = 1 + n_part
    kv_idx = torch.zeros(1, 1, nt, nt, **i32)
    kv_idx[0, 0, 0] = torch.arange(nt, **i32)
    width = min(m, nb)  # a row has at most nb distinct blocks (m > nb on short sequences)
    kv_idx[0, 0, 1:, 1 : width + 1] = part[:, :width]  # after the CLS tile (index 0)
    full_num = torch.zeros(1, 1, nt, **i32)
    full_num[0, 0, 1:] = n_full
    full_idx = torch.zeros(1, 1, nt, nt, **i32)
    full_idx[0, 0, 1:, :width] = full[:, :width]
    length = tile * nt
    return BlockMask.from_kv_blocks(
        kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=tile, mask_mod=rows_mod,
        seq_lengths=(length, length),
    )  # fmt: skip


def _flex_tiled(q, k, v, positions, rel_bias, layout, key_blocks, tile: int) -> Tensor:
    """FlexAttention over a tile-aligned layout: ``[CLS, masked slots | block 0, masked slots |
    block 1 ...]`` in ``tile``-token tiles (``tile >= block_size``).

    Every query block is exactly one tile, so the kernel computes only the listed blocks (plus
    the CLS row and column), and the mask is read from the block table instead of being
    evaluated token by token (``create_block_mask`` takes about a second per table on CPU, and
    the random blocks change every layer). The official padded key slots of the last block
    keep their meaning (zero key and value, the CLS position; masked with
    ``BlockSparse.mask_padding``); the extra slots of a tile are always masked. Compiled; eager
    under ``LEANVL_FLEX_EAGER=1`` or a ``TorchFunctionMode``, where ``mask_mod`` (which carries
    the whole rule) is applied to every score. On CPU, raises when a gradient is needed:
    FlexAttention has no CPU backward.
    """
    b, h, s, d = q.shape
    n = s - 1
    nb, bs = key_blocks.shape[0], layout.block_size
    if tile < bs:
        raise ValueError(f"flex tile of {tile} tokens is smaller than the block ({bs})")
    dev = q.device
    params = [rel_bias.table] if rel_bias is not None else []
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, *params))
    if grad and dev.type == "cpu":
        raise NotImplementedError(
            "attention_backend='flex' cannot train on CPU: FlexAttention has no CPU backward "
            "(torch). Use attention_backend='gather' for CPU training, or run under "
            "torch.no_grad() for inference."
        )
    token = torch.arange(nb * bs, device=dev)
    slot = tile * (1 + token // bs) + token % bs  # layout slot of token 1 + i (and of padding)
    length = tile * (nb + 1)
    source = torch.full((length,), s, device=dev)  # index s: a zero row
    source[0] = 0
    source[slot[:n]] = torch.arange(1, s, device=dev)
    back = torch.cat([token.new_zeros(1), slot[:n]])

    def lay(t: Tensor) -> Tensor:  # (B, H, S, d) -> (B, H, length, d)
        return F.pad(t, (0, 0, 0, 1)).index_select(2, source)

    qp, kp, vp = lay(q), lay(k), lay(v)
    # masked slots and padding take the CLS position, as in gather
    pos = F.pad(positions, (0, 1)).index_select(1, source).expand(b, -1).contiguous()
    allowed = torch.zeros(nb + 1, nb + 1, dtype=torch.bool, device=dev)
    allowed[torch.arange(1, nb + 1, device=dev)[:, None], key_blocks + 1] = True
    allowed[:, 0] = True
    mask_padding = layout.mask_padding

    def mask_mod(bi, hi, q_idx, kv_idx):
        kv_tile, kv_r = kv_idx // tile, kv_idx % tile
        in_block = (kv_tile >= 1) & (kv_r < bs)  # a block's token or official padding
        real = (kv_idx == 0) | (in_block & ((kv_tile - 1) * bs + kv_r < n))
        usable = real if mask_padding else (kv_idx == 0) | in_block
        row = usable & allowed[q_idx // tile, kv_tile]
        return torch.where(q_idx < tile, real, row)  # the CLS query sees every real key

    mask = _tile_block_mask(n, layout, key_blocks, tile, mask_mod, dev)
    score_mod = _bias_score_mod(rel_bias, pos)
    out = _attend(qp, kp, vp, score_mod, mask)
    return out.index_select(2, back)


def _flex_padded(q, k, v, positions, rel_bias, layout, key_blocks) -> Tensor:
    """FlexAttention over ``[CLS, x_1..x_n, padding]`` with the kernel's own tiles (the GPU
    default; see the module docstring)."""
    b, h, s, d = q.shape
    n = s - 1
    nb, bs = key_blocks.shape[0], layout.block_size
    pad = nb * bs - n
    qp, kp, vp = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    pos = F.pad(positions, (0, pad)).expand(b, -1).contiguous()  # padded slots -> CLS position
    mask = _block_mask(n, bs, key_blocks, layout.mask_padding)
    return _attend(qp, kp, vp, _bias_score_mod(rel_bias, pos), mask)[:, :, :s]


def _gpu_tile(block_size: int) -> int | None:
    """Tile of the tile-aligned layout on an accelerator (``LEANVL_FLEX_TILED=1``), else None.

    The GPU kernel needs power-of-two tiles of at least 16 tokens: a 56-token block gets a
    64-token tile (8 masked slots), where the default layout's 128-token tiles span parts of
    2-3 blocks. Not yet measured on a GPU: ``benchmarks/gpu_checks.sh`` checks and times it.
    """
    if os.environ.get("LEANVL_FLEX_TILED") != "1":
        return None
    return max(16, 1 << (block_size - 1).bit_length())


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
    tile = layout.block_size if q.device.type == "cpu" else _gpu_tile(layout.block_size)
    if tile is None:
        out = _flex_padded(q, k, v, positions, rel_bias, layout, key_blocks)
    else:
        out = _flex_tiled(q, k, v, positions, rel_bias, layout, key_blocks, tile)
    cls_bias = rel_bias(positions[:, :1], positions) if rel_bias is not None else None
    return out, cls_attention_probs(q[:, :, :1], k, cls_bias)
