"""Frame-index samplers against hand-computed lists (spec svitt.md §8, allinone.md §4.2)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from leanvl.video.sampling import sample_frame_indices, videopanda_frame_indices
from tests.conftest import GOLDEN


def test_middle_worked_example():
    # linspace(0, 10, 5) -> [0, 2, 5, 7, 10]; segments [0,1] [2,4] [5,6] [7,9]
    assert sample_frame_indices(4, 10, "middle") == [0, 3, 5, 8]


def test_middle_bigbuckbunny_length():
    # int(linspace(0, 132, 9)) = [0, 16, 33, 49, 66, 82, 99, 115, 132]
    assert sample_frame_indices(8, 132, "middle") == [7, 24, 40, 57, 73, 90, 106, 123]


def test_uniform_is_frozens_midpoint():
    for vlen in (8, 13, 100, 250):
        assert sample_frame_indices(8, vlen, "uniform") == sample_frame_indices(8, vlen, "middle")


def test_rand_never_draws_the_last_frame_of_a_segment():
    seen: set[int] = set()
    for seed in range(300):
        indices = sample_frame_indices(4, 10, "rand", rng=seed)
        assert indices[0] == 0 and indices[1] in (2, 3) and indices[2] == 5
        assert indices[3] in (7, 8)
        seen.update(indices)
    # the official off-by-one: 1, 4, 6, 9 (last of each segment) are never drawn
    assert seen == {0, 2, 3, 5, 7, 8}


def test_rand_is_deterministic_per_seed_and_matches_the_official_draws():
    assert sample_frame_indices(8, 250, "rand", rng=7) == sample_frame_indices(
        8, 250, "rand", rng=random.Random(7)
    )
    assert sample_frame_indices(8, 250, "rand", rng=np.int64(7)) == sample_frame_indices(
        8, 250, "rand", rng=7
    )
    # Official code: random.choice(range(a_k, a_{k+1} - 1)) with the same random state.
    state = random.Random(11)
    bounds = [0, 31, 62, 93, 125, 156, 187, 218, 250]
    expected = [state.choice(range(bounds[k], bounds[k + 1] - 1)) for k in range(8)]
    assert sample_frame_indices(8, 250, "rand", rng=11) == expected
    draws = {tuple(sample_frame_indices(8, 250, "rand", rng=s)) for s in range(20)}
    assert len(draws) > 15


def test_rand_global_random_when_no_rng():
    random.seed(3)
    first = sample_frame_indices(8, 250, "rand")
    random.seed(3)
    assert sample_frame_indices(8, 250, "rand") == first


def test_rand_fallback_sorted_subset_when_a_segment_has_one_frame():
    # vlen 5, 4 frames: segments [0,0] [1,1] [2,2] [3,4] -> range(0, 0) is empty
    for seed in range(50):
        indices = sample_frame_indices(4, 5, "rand", rng=seed)
        assert indices == sorted(indices) and len(set(indices)) == 4
        assert all(0 <= i < 5 for i in indices)


def test_short_videos_are_padded_with_the_last_index():
    assert sample_frame_indices(8, 3, "middle") == [0, 1, 2, 2, 2, 2, 2, 2]
    assert sample_frame_indices(8, 3, "rand", rng=0) == [0, 1, 2, 2, 2, 2, 2, 2]
    assert sample_frame_indices(4, 1, "middle") == [0, 0, 0, 0]


def test_fps_sampling():
    # 100 frames at 25 fps = 4 s; one frame per second at 0.5, 1.5, 2.5, 3.5 s -> round half even
    assert sample_frame_indices(8, 100, "fps1", fps=25) == [12, 38, 62, 88]
    assert sample_frame_indices(8, 100, "fps1", fps=25, max_num_frames=2) == [12, 38]
    assert sample_frame_indices(1, 100, "fps0.5", fps=25) == [25, 75]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 0, "vlen": 10}, "num_frames"),
        ({"num_frames": 4, "vlen": 0}, "vlen"),
        ({"num_frames": 4, "vlen": 10, "sample": "random"}, "unknown sample='random'"),
        ({"num_frames": 4, "vlen": 10, "sample": "fps2"}, "fps"),
        ({"num_frames": 4, "vlen": 10, "sample": "fpsx", "fps": 25}, "fps<k>"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_frame_indices(**kwargs)


def test_videopanda_spec_examples():
    assert videopanda_frame_indices(300, 30.0) == [0, 30, 60, 90, 150, 180, 210, 270]
    assert videopanda_frame_indices(90, 30.0) == [0, 12, 24, 36, 48, 60, 72, 84]
    assert videopanda_frame_indices(5, 10.0) == [0, 1, 2, 3, 4]
    # fps < 0.5: stride clamped to 1 (official: crash); int(linspace(0, 9, 8))
    assert videopanda_frame_indices(10, 0.2) == [0, 1, 2, 3, 5, 6, 7, 9]
    assert sample_frame_indices(8, 300, "videopanda", fps=30.0) == [
        0,
        30,
        60,
        90,
        150,
        180,
        210,
        270,
    ]


def test_videopanda_golden_frame_sampling_cases():
    manifest = GOLDEN / "videopanda" / "manifest.json"
    if not manifest.exists():
        pytest.skip("Video-Panda golden fixture not present")
    cases = json.loads(manifest.read_text())["frame_sampling"]["cases"]
    assert len(cases) >= 5
    for case in cases:
        got = videopanda_frame_indices(case["total_frames"], case["avg_fps"])
        assert got == case["sampled_frame_indices"], case
