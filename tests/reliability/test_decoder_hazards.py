"""Issue 11, item 7: a video that makes the decoder hang, or one of huge resolution, is skipped
by policy (``data.on_error=skip``) instead of stalling a worker or eating the memory.

The limits are ``data.decode_timeout`` (seconds per clip) and ``data.max_video_pixels``
(largest ``width * height``; 8K UHD by default). The "huge" video here is 64x64 against a
limit of 32x32 pixels, and the "hang" is a decoder call that sleeps for a minute on one file:
the same checks catch an 8K file and a decoder stuck between packets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import leanvl.training.data as training_data
from leanvl.cli import main
from leanvl.training.config import load_train_config
from leanvl.training.data import ClipFrames, build_frame_cache, cache_failures
from leanvl.training.runner import train
from leanvl.video import VideoDecodeError
from leanvl.video.writer import write_video
from tests.reliability.helpers import copy_dataset, recipe

pytestmark = pytest.mark.faults

HUGE, HANG = "train_00010.mp4", "train_00005.mp4"


@pytest.fixture(scope="module")
def hazards(synth, tmp_path_factory) -> Path:
    """A copy of the synthetic set whose ``HUGE`` clip is re-encoded at 64x64 (others 32x32)."""
    root = copy_dataset(synth, tmp_path_factory.mktemp("hazards") / "data")
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    write_video(root / "videos" / HUGE, frames, fps=8)
    return root


def cli_main_code(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _skipped(result: dict) -> dict[str, str]:
    (items,) = result["skipped_videos"].values()
    return {Path(item["path"]).name: item["reason"] for item in items}


@pytest.fixture
def hanging_decoder(monkeypatch):
    """The decoder sleeps for a minute on ``HANG`` (inherited by forked DataLoader workers)."""
    real = training_data.read_frames

    def read_frames(path, *args, **kwargs):
        if Path(path).name == HANG:
            time.sleep(60)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(training_data, "read_frames", read_frames)


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_huge_resolution_is_skipped_without_decoding(hazards, tmp_path, cache):
    data = {
        "on_error": "skip",
        "cache": cache,
        "cache_dir": str(tmp_path / "cache"),
        "num_workers": 1,
        "max_video_pixels": 32 * 32,
    }
    result = train(load_train_config(recipe(hazards, tmp_path / "run", data=data)))
    assert result["steps"] == 4
    skipped = _skipped(result)
    assert list(skipped) == [HUGE]
    assert skipped[HUGE].startswith("resolution 64x64 is over the limit of 1,024 pixels")
    # `leanvl data scan` with the same limit finds exactly that file
    report = tmp_path / "scan.json"
    code = cli_main_code(
        ["data", "scan", str(hazards / "annotations" / "ret_train.json"), "--workers", "1",
         "--video-root", str(hazards / "videos"), "--max-pixels", "1024", "--report", str(report)]
    )  # fmt: skip
    bad = json.loads(report.read_text())["bad_videos"]
    assert code == 1 and [Path(b["path"]).name for b in bad] == [HUGE]
    # the default limit (8K) accepts the clip: nothing is skipped
    data.pop("max_video_pixels")
    data["cache_dir"] = str(tmp_path / "cache2")
    again = train(load_train_config(recipe(hazards, tmp_path / "run2", data=data)))
    assert again["skipped_videos"] in ({}, {next(iter(result["skipped_videos"])): []})


def test_hanging_decode_in_a_cache_worker_is_skipped_after_the_timeout(
    hazards, tmp_path, hanging_decoder
):
    data = {
        "on_error": "skip",
        "cache_dir": str(tmp_path / "cache"),
        "num_workers": 1,  # the cache decodes in a (forked) worker process
        "decode_timeout": 1.0,
    }
    start = time.monotonic()
    result = train(load_train_config(recipe(hazards, tmp_path / "run", data=data)))
    assert time.monotonic() - start < 50  # the 60 s sleep was cut short
    assert result["steps"] == 4
    assert _skipped(result) == {HANG: "timeout: no result after 1 s"}


def test_hanging_decode_in_the_main_process(hazards, tmp_path, hanging_decoder):
    paths = sorted((hazards / "videos").glob("train_0000*.mp4"))
    start = time.monotonic()
    cache = build_frame_cache(paths, tmp_path / "cache", 4, 32, num_workers=0, timeout=0.5)
    assert time.monotonic() - start < 30
    assert cache_failures(cache) == {
        str(hazards / "videos" / HANG): "timeout: no result after 0.5 s"
    }
    # decoding on demand (data.cache=false): the clip raises, naming the file, instead of hanging
    clips = ClipFrames([hazards / "videos" / HANG], 3, 32, None, timeout=0.5)
    with pytest.raises(VideoDecodeError, match=rf"'{hazards}/videos/{HANG}': timeout"):
        clips.get(0, "middle", None)
    ok = ClipFrames([paths[0]], 3, 32, None, timeout=0.5).get(0, "middle", None)
    assert tuple(ok.shape) == (3, 32, 32, 3)
    time.sleep(0.7)  # no stray SIGALRM arrives after the block
