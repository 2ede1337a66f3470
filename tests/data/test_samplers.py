"""SceneGroupedBatchSampler on hand-built group lists; EgoVLP segment ids."""

import pytest

from leanvl.data.records import EgoClipRecord
from leanvl.data.samplers import SceneGroupedBatchSampler, egoclip_segment_ids

#          0    1    2    3    4    5    6    7    8    9   10   11
GROUPS = ["a", "a", "b", "b", "b", "c", "d", "d", "e", "e", "e", "e"]


def test_batches_are_anchor_partner_pairs_from_the_same_group():
    sampler = SceneGroupedBatchSampler(GROUPS, batch_size=3, seed=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4
    anchors = [i for batch in batches for i in batch[:3]]
    assert sorted(anchors) == list(range(12))  # every clip is an anchor exactly once
    for batch in batches:
        assert len(batch) == 6 and len(set(batch)) == 6
        for anchor, partner in zip(batch[:3], batch[3:], strict=True):
            others = {i for i, g in enumerate(GROUPS) if g == GROUPS[anchor]} - {anchor}
            if others - set(batch[:3]):  # a same-group clip was available
                assert GROUPS[partner] == GROUPS[anchor]


def test_singleton_group_gets_a_random_distinct_partner():
    groups = ["solo", "x", "x", "y", "y"]
    for seed in range(20):
        sampler = SceneGroupedBatchSampler(groups, batch_size=1, shuffle=False, seed=seed)
        first = next(iter(sampler))
        assert first[0] == 0 and first[1] != 0  # no duplicate of itself
        for anchor, partner in list(sampler)[1:]:
            assert groups[partner] == groups[anchor] and partner != anchor


def test_partner_avoids_clips_already_in_the_batch():
    # both clips of group "p" are anchors of the same batch: their partners must come from
    # elsewhere rather than repeating an anchor
    groups = ["p", "p", "q", "q", "q"]
    sampler = SceneGroupedBatchSampler(groups, batch_size=2, shuffle=False, drop_last=True)
    first = next(iter(sampler))
    assert first[:2] == [0, 1]
    assert set(first[2:]) <= {2, 3, 4} and len(set(first)) == 4


def test_deterministic_per_seed_and_epoch():
    def run(seed, epoch):
        sampler = SceneGroupedBatchSampler(GROUPS, batch_size=2, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert run(0, 0) == run(0, 0)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)


def test_ddp_ranks_split_the_single_process_epoch():
    single = SceneGroupedBatchSampler(GROUPS, batch_size=2, seed=3)
    single.set_epoch(2)
    ranks = []
    for rank in range(3):
        sampler = SceneGroupedBatchSampler(GROUPS, 2, seed=3, num_replicas=3, rank=rank)
        sampler.set_epoch(2)
        ranks.append(list(sampler))
    assert [len(r) for r in ranks] == [2, 2, 2]
    anchors = [set(b[:2]) for r in ranks for b in r]
    assert set().union(*anchors) == set(range(12))  # disjoint anchors covering the data
    assert sorted(b for r in ranks for b in r) == sorted(single)
    assert ranks[1] == [list(single)[1], list(single)[4]]


def test_drop_last_and_wraparound():
    groups = GROUPS[:7]
    kept = SceneGroupedBatchSampler(groups, batch_size=2, num_replicas=2, rank=0, drop_last=True)
    assert len(kept) == len(list(kept)) == 1  # 7 clips -> 1 round of 2 x 2 anchors
    padded = SceneGroupedBatchSampler(groups, 2, num_replicas=2, rank=1, drop_last=False)
    assert len(padded) == len(list(padded)) == 2  # 8 anchor slots: one clip repeats
    both = [padded]
    both.append(SceneGroupedBatchSampler(groups, 2, num_replicas=2, rank=0, drop_last=False))
    anchors = [i for s in both for b in s for i in b[:2]]
    assert len(anchors) == 8 and set(anchors) == set(range(7))


def test_argument_errors():
    with pytest.raises(ValueError, match="rank=2 not in"):
        SceneGroupedBatchSampler(GROUPS, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SceneGroupedBatchSampler(GROUPS, 0)
    with pytest.raises(ValueError, match="group_ids is empty"):
        SceneGroupedBatchSampler([], 2)


def _clip(uid, time):
    return EgoClipRecord(video_uid=uid, narration_time=time, clip_start=time - 1,
                         clip_end=time + 1, clip_text="#C C opens the door")  # fmt: skip


def test_egoclip_segment_ids():
    records = [_clip("v1", 12.5), _clip("v1", 59.99), _clip("v1", 60.0), _clip("v2", 130.0)]
    assert egoclip_segment_ids(records) == ["v1_0", "v1_0", "v1_1", "v2_2"]
    assert egoclip_segment_ids(records, 30) == ["v1_0", "v1_1", "v1_2", "v2_4"]
    bad = EgoClipRecord(video_uid="v3", clip_start=0, clip_end=1, clip_text="x", clip_idx=9)
    with pytest.raises(ValueError, match=r"record 1 \(clip_idx 9, video 'v3'\)"):
        egoclip_segment_ids([records[0], bad])
