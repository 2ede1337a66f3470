"""Temporal Token Rolling (All-in-one, Wang et al., CVPR 2023, arXiv 2203.07303).

All-in-one runs one transformer sequence per frame. Before every block, a fixed set of token
positions of each frame's visual part is exchanged with the neighbouring frames, which is the
only way information flows between frames (no temporal attention, no extra parameters):

* position 0 of the visual part (the visual CLS) is never moved;
* the ``fold = visual_len // fold_div`` positions after it receive the tokens that frame
  ``t - 1`` had at the same positions (cyclic: frame 0 receives from frame T-1), i.e.
  ``torch.roll(shift=+1)`` over time;
* the last ``fold`` positions receive frame ``t + 1``'s tokens (``shift=-1``);
* text tokens and every other position are untouched.

This is the official ``TemporalRoll`` version 0 with ``n_div = 8``. Because the roll acts on
sequence *positions*, which patches move depends on the order the patches were laid out in
(raster order, or the official per-frame random permutation).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TemporalRoll", "temporal_roll"]


def temporal_roll(
    x: torch.Tensor, num_frames: int, *, visual_start: int = 0, fold_div: int = 8
) -> torch.Tensor:
    """Roll the visual tokens of per-frame sequences across time.

    Args:
        x: (B * T, N, C) sequences, frames of one sample consecutive (row ``b * T + t``).
        num_frames: T.
        visual_start: index of the first visual token (the visual CLS); tokens before it (the
            text of a joint sequence) are never rolled.
        fold_div: ``fold = (N - visual_start) // fold_div`` positions roll each way.

    Returns:
        A new tensor of the same shape; ``x`` is not modified.
    """
    if fold_div < 2:
        raise ValueError(f"temporal_roll: fold_div must be >= 2, got {fold_div}")
    bt, n, c = x.shape
    if bt % num_frames:
        raise ValueError(
            f"temporal_roll: batch of {bt} sequences is not a multiple of num_frames={num_frames}"
        )
    fold = (n - visual_start) // fold_div
    if fold == 0 or num_frames == 1:
        return x
    head = visual_start + 1  # the visual CLS stays in place
    v = x.view(bt // num_frames, num_frames, n, c)
    parts = [
        v[:, :, :head],
        v[:, :, head : head + fold].roll(1, dims=1),
        v[:, :, head + fold : n - fold],
        v[:, :, n - fold :].roll(-1, dims=1),
    ]
    return torch.cat(parts, dim=2).view(bt, n, c)


class TemporalRoll(nn.Module):
    """Module form of :func:`temporal_roll` (no parameters).

    Args:
        fold_div: a ``1 / fold_div`` share of the visual tokens rolls forward, the same share
            backward (8 in All-in-one).
    """

    def __init__(self, fold_div: int = 8) -> None:
        super().__init__()
        if fold_div < 2:
            raise ValueError(f"TemporalRoll: fold_div must be >= 2, got {fold_div}")
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor, num_frames: int, visual_start: int = 0) -> torch.Tensor:
        """Roll ``x`` (B * T, N, C); see :func:`temporal_roll`."""
        return temporal_roll(x, num_frames, visual_start=visual_start, fold_div=self.fold_div)

    def extra_repr(self) -> str:
        return f"fold_div={self.fold_div}"
