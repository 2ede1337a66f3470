"""3D (space-time) relative position bias with a CLS token, as in SViTT.

SViTT (Li et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers", CVPR 2023) has
no absolute or temporal position embedding: every attention layer adds a learned per-head bias
indexed by the (dt, dy, dx) offset between the query and key patches, extending BEiT's 2D
relative bias to time. Three extra table rows hold the CLS->patch, patch->CLS and CLS->CLS
biases.

Tokens are addressed by *position*: 0 is the CLS token, ``1 + t*h*w + y*w + x`` is patch
(t, y, x). Because the index is computed from positions instead of a stored ``(S, S)`` buffer,
the same code serves the dense layer, block-gathered keys and tokens that survived pruning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RelativePositionBias3D", "num_relative_positions", "resample_temporal_table"]


def num_relative_positions(frames: int, height: int, width: int) -> int:
    """Rows of the bias table: ``(2T-1)(2h-1)(2w-1) + 3`` (the 3 CLS rows last)."""
    return (2 * frames - 1) * (2 * height - 1) * (2 * width - 1) + 3


class RelativePositionBias3D(nn.Module):
    """Per-head learned bias for every (query, key) position pair of a ``(T, h, w)`` token grid.

    Args:
        frames: T, the temporal window the table covers (frames at construction).
        height: h, patch rows per frame.
        width: w, patch columns per frame.
        num_heads: attention heads (table columns).
    """

    def __init__(self, frames: int, height: int, width: int, num_heads: int) -> None:
        super().__init__()
        self.frames, self.height, self.width = frames, height, width
        rows = num_relative_positions(frames, height, width)
        self.table = nn.Parameter(torch.zeros(rows, num_heads))

    def index(self, query_pos: Tensor, key_pos: Tensor) -> Tensor:
        """Table rows for every (query, key) pair; positions broadcast like ``q[..., :, None]``.

        The row of a patch pair is ``(dt + T-1) * span + (dy + h-1) * (2w-1) + (dx + w-1)``,
        which separates into ``code(query) - code(key) + offset`` with
        ``code = t * span + y * (2w-1) + x``: the per-position codes are computed once
        (``O(Nq + Nk)``) and the pair grid is a single broadcast subtraction, instead of
        decomposing every pair into (dt, dy, dx) (the block-gathered key grids are large).

        Args:
            query_pos: ``(..., Nq)`` int64 positions (0 = CLS).
            key_pos: ``(..., Nk)`` int64 positions (0 = CLS).

        Returns:
            ``(..., Nq, Nk)`` int64 row indices into the table.
        """
        h, w = self.height, self.width
        span = (2 * h - 1) * (2 * w - 1)
        p = (2 * self.frames - 1) * span
        offset = (self.frames - 1) * span + (h - 1) * (2 * w - 1) + w - 1
        idx = (self._code(query_pos) + offset)[..., :, None] - self._code(key_pos)[..., None, :]
        q_cls = (query_pos == 0)[..., :, None]
        k_cls = (key_pos == 0)[..., None, :]
        idx = torch.where(k_cls, p + 1, idx)  # patch -> CLS
        idx = torch.where(q_cls, p, idx)  # CLS -> patch
        return torch.where(q_cls & k_cls, p + 2, idx)  # CLS -> CLS

    def _code(self, pos: Tensor) -> Tensor:
        """``t * span + y * (2w-1) + x`` of patch positions (CLS is treated as patch 0)."""
        h, w = self.height, self.width
        patch = (pos - 1).clamp(min=0)
        t, rest = patch // (h * w), patch % (h * w)
        return (t * (2 * h - 1) + rest // w) * (2 * w - 1) + rest % w

    def lookup(self, index: Tensor) -> Tensor:
        """Bias ``(heads, *index.shape)`` of table rows ``index`` (heads first).

        Gathers from the transposed ``(heads, rows)`` table: the result comes out heads-first
        (no transposed copy of the large bias) and the backward is a ``scatter_add_`` into that
        small table, whereas the backward of ``table[index]`` (advanced indexing) is a serial
        ``index_put_(accumulate=True)`` over every (query, key, head) entry, which dominated
        the CPU training profile of SViTT. ``gather`` rather than ``index_select``: on CPU it
        is parallel over heads and entries.
        """
        table = self.table.t().contiguous()
        flat = index.flatten()
        return table.gather(1, flat.expand(table.shape[0], -1)).view(table.shape[0], *index.shape)

    def forward(self, query_pos: Tensor, key_pos: Tensor) -> Tensor:
        """Bias ``(..., heads, Nq, Nk)`` for query ``(..., Nq)`` and key ``(..., Nk)`` positions."""
        return self.lookup(self.index(query_pos, key_pos)).movedim(0, -3)


def resample_temporal_table(
    table: Tensor, old_frames: int, new_frames: int, height: int, width: int
) -> Tensor:
    """Resample a bias table to another frame count (official SViTT carry-over between stages).

    The ``(2T-1)`` temporal offsets are resampled with nearest neighbour in ``F.interpolate``
    semantics, ``src = floor(dst * (2T_old-1) / (2T_new-1))`` (not symmetric around 0, like the
    official code); the 3 CLS rows are kept.

    Args:
        table: ``((2T_old-1)(2h-1)(2w-1) + 3, heads)`` bias table.
        old_frames: T_old the table was trained with.
        new_frames: T_new of the target model.
        height: h, patch rows per frame.
        width: w, patch columns per frame.
    """
    expected = num_relative_positions(old_frames, height, width)
    if table.shape[0] != expected:
        raise ValueError(
            f"relative position table has {table.shape[0]} rows, expected {expected} for "
            f"{old_frames} frames of {height}x{width} patches"
        )
    if old_frames == new_frames:
        return table.clone()
    span = (2 * height - 1) * (2 * width - 1)
    grid = table[:-3].reshape(2 * old_frames - 1, span, -1)
    old_n, new_n = 2 * old_frames - 1, 2 * new_frames - 1
    # (span*heads, 1, old_n) -> nearest along time, exactly as the official F.interpolate call
    flat = grid.permute(1, 2, 0).reshape(1, -1, old_n)
    out = F.interpolate(flat, size=new_n, mode="nearest").reshape(span, -1, new_n)
    return torch.cat([out.permute(2, 0, 1).reshape(new_n * span, -1), table[-3:]], dim=0)
