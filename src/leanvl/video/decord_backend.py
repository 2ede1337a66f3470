"""Optional decord backend for :func:`leanvl.video.read_frames` (``pip install decord2``).

decord (the reader of the official All-in-one, Singularity and SViTT code) numbers frames by the
demuxed packets in presentation order, as the PyAV backend does, so the same sample gives the same
indices. It is imported lazily: leanvl works without it.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from leanvl.video.errors import VideoDecodeError
from leanvl.video.sampling import sample_frame_indices


def _import_decord():
    try:
        import decord
    except ImportError:
        raise ImportError(
            "backend='decord' needs the decord2 package: pip install decord2 "
            "(or pip install 'leanvl[decord]'); backend='pyav' needs nothing extra"
        ) from None
    decord.bridge.set_bridge("native")
    return decord


def read_frames_decord(
    path: str,
    num_frames: int,
    sample: str,
    size: int | tuple[int, int] | None,
    rng: random.Random | None,
    max_num_frames: int,
    start: float | None,
    end: float | None,
) -> tuple[torch.Tensor, list[int]]:
    """decord version of :func:`leanvl.video.read_frames` (same arguments and results)."""
    from leanvl.video.decode import _open, _output_size

    decord = _import_decord()
    # PyAV reads the header first (~1 ms): precise reasons for bad files, and the source size.
    container, stream = _open(path)
    with container:
        width, height = _output_size(stream.width, stream.height, size) or (-1, -1)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height)
    except Exception as err:  # decord raises its own DECORDError (a RuntimeError) on any failure
        message = str(err).splitlines()[0]
        raise VideoDecodeError(path, f"not a video or truncated (decord: {message})") from None
    vlen, fps = len(reader), float(reader.get_avg_fps())
    if vlen == 0:
        raise VideoDecodeError(path, "no frames (empty or truncated video stream)")
    first, stop = 0, vlen
    if start is not None or end is not None:
        times = np.arange(vlen) / fps
        lo = 0.0 if start is None else float(start)
        hi = np.inf if end is None else float(end)
        first, stop = int(np.searchsorted(times, lo)), int(np.searchsorted(times, hi))
        if stop <= first:
            first = min(first, vlen - 1)
            stop = first + 1
    rel = sample_frame_indices(num_frames, stop - first, sample, fps, max_num_frames, rng=rng)
    indices = [first + i for i in rel]
    try:
        frames = reader.get_batch(indices).asnumpy()
    except Exception as err:
        raise VideoDecodeError(path, f"decord failed: {str(err).splitlines()[0]}") from None
    return torch.from_numpy(np.ascontiguousarray(frames)), indices
