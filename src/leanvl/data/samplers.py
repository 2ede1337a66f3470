"""Batch samplers: EgoNCE's scene-aware negatives (SViTT-Ego / EgoVLP).

EgoNCE (Lin et al., "Egocentric Video-Language Pretraining", NeurIPS 2022; used by SViTT-Ego,
Valdez et al., 2024) gets its *scene-aware negatives* from the batch, not from the loss: each
sampled clip brings one more clip of the same video and the same time window, so the batch
holds pairs of visually similar clips that the contrastive loss has to tell apart (or treats as
positives when their narrations share a verb and a noun). EgoVLP draws the extra clip inside
the dataset (``segment_id = video_uid + "_" + floor(narration_time / neg_param)``);
:class:`SceneGroupedBatchSampler` does the same grouping as a batch sampler, so any map-style
dataset (decoded clips, a frame cache) can be used unchanged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from leanvl.data.records import EgoClipRecord

__all__ = ["SceneGroupedBatchSampler", "egoclip_segment_ids"]


def egoclip_segment_ids(
    records: Sequence[EgoClipRecord], neg_window_seconds: float = 60.0
) -> list[str]:
    """EgoVLP's ``segment_id`` of each clip: ``f"{video_uid}_{int(narration_time // window)}"``.

    Args:
        records: EgoClip records (:func:`leanvl.data.read_egoclip_csv`).
        neg_window_seconds: EgoVLP's ``neg_param`` (60 s in its dataset module's example).

    Raises:
        ValueError: a non-positive window, or a record without ``narration_time``.
    """
    if not neg_window_seconds > 0:
        raise ValueError(f"neg_window_seconds must be > 0, got {neg_window_seconds}")
    ids = []
    for i, record in enumerate(records):
        if record.narration_time is None:
            raise ValueError(
                f"record {i} (clip_idx {record.clip_idx}, video {record.video_uid!r}) has no "
                "narration_time"
            )
        ids.append(f"{record.video_uid}_{int(record.narration_time // neg_window_seconds)}")
    return ids


class SceneGroupedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` pairs: a shuffled clip and one more clip from its group.

    Each batch is ``[a_1, ..., a_N, p_1, ..., p_N]`` (EgoVLP's order: the extra clips are
    appended), where the anchors ``a_i`` walk through a permutation of the dataset and ``p_i``
    is drawn uniformly from the other members of ``a_i``'s group that are not yet in the batch.
    When there is none (a one-clip group, or all its clips already in the batch), ``p_i`` is a
    random clip not yet in the batch -- an ordinary negative -- so every batch has ``2 N``
    distinct indices (as long as the dataset has that many).

    Determinism: the batches are a function of ``(seed, epoch)`` only (call :meth:`set_epoch`
    every epoch). With DDP, all processes build the same global list of batches and process
    ``rank`` takes batches ``rank, rank + num_replicas, ...``, so the processes' batches are
    disjoint in anchors and together equal the single-process epoch (when it divides evenly).
    The partners of batch ``k`` are drawn from ``(seed, epoch, k)``, so each process only
    draws its own batches.

    Args:
        group_ids: one hashable group id per dataset index (:func:`egoclip_segment_ids`).
        batch_size: pairs per batch ``N`` (the batch holds ``2 N`` indices).
        shuffle: shuffle the anchors (``False``: dataset order; partners are still random).
        seed: base seed, identical on every process.
        num_replicas: number of DDP processes.
        rank: this process's rank in ``[0, num_replicas)``.
        drop_last: drop the anchors that do not fill a whole batch on every process;
            otherwise the anchor list wraps around to the start to fill the last batches (so
            every process gets the same number of full batches, as ``DistributedSampler``
            pads).
    """

    def __init__(
        self,
        group_ids: Sequence[Hashable],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} not in [0, num_replicas={num_replicas})")
        if len(group_ids) == 0:
            raise ValueError("group_ids is empty")
        self.group_ids = list(group_ids)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0
        members: dict[Hashable, list[int]] = {}
        for index, group in enumerate(self.group_ids):
            members.setdefault(group, []).append(index)
        self._members = members

    @property
    def num_groups(self) -> int:
        """Number of distinct groups."""
        return len(self._members)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches :meth:`__iter__` yields."""
        self.epoch = epoch

    def _batches_per_replica(self) -> int:
        per_round = self.batch_size * self.num_replicas
        n = len(self.group_ids)
        return n // per_round if self.drop_last else math.ceil(n / per_round)

    def __len__(self) -> int:
        """Batches this process yields per epoch."""
        return self._batches_per_replica()

    def _anchors(self) -> list[int]:
        n = len(self.group_ids)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        total = self._batches_per_replica() * self.batch_size * self.num_replicas
        while len(order) < total:  # drop_last=False: wrap around to fill the last batches
            order += order[: total - len(order)]
        return order[:total]

    def _partner(self, anchor: int, used: set[int], rng: random.Random) -> int:
        group = self._members[self.group_ids[anchor]]
        for _ in range(8):  # rejection first: groups can be large, the batch is small
            choice = group[rng.randrange(len(group))]
            if choice not in used:
                return choice
        free = [i for i in group if i not in used]
        if free:
            return free[rng.randrange(len(free))]
        n = len(self.group_ids)
        if len(used) >= n:  # fewer clips than the batch: allow a repeat
            return rng.randrange(n)
        while True:
            choice = rng.randrange(n)
            if choice not in used:
                return choice

    def batch(self, anchors: Sequence[int], batch_number: int) -> list[int]:
        """Anchors followed by their partners, drawn from ``(seed, epoch, batch_number)``."""
        rng = random.Random(f"{self.seed}:{self.epoch}:{batch_number}")
        used = set(anchors)
        partners = []
        for anchor in anchors:
            partner = self._partner(anchor, used, rng)
            used.add(partner)
            partners.append(partner)
        return [*anchors, *partners]

    def __iter__(self) -> Iterator[list[int]]:
        anchors = self._anchors()
        n = self.batch_size
        for k in range(self.rank, len(anchors) // n, self.num_replicas):
            yield self.batch(anchors[k * n : (k + 1) * n], k)
