"""Which frames of a video a model sees: the frame-index samplers of the official repositories.

``sample_frame_indices`` reproduces ``get_frame_indices`` of Singularity / SViTT (Lei et al., 2022;
Li et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers", CVPR 2023), itself the
``sample_frames`` of Frozen in Time (Bain et al., ICCV 2021) that All-in-one (Wang et al., "All in
One: Exploring Unified Video-Language Pre-training", CVPR 2023) uses. ``videopanda_frame_indices``
reproduces Video-Panda's 1-fps sampler (Yi et al., 2024, ``_get_rawvideo_dec``).

Worked example (``vlen=10``, 4 frames): ``linspace(0, 10, 5).astype(int) = [0, 2, 5, 7, 10]``,
segments ``[0,1] [2,4] [5,6] [7,9]``; ``middle`` gives ``[0, 3, 5, 8]``; ``rand`` draws from
``range(0,1) range(2,4) range(5,6) range(7,9)``, i.e. one of ``{0} {2,3} {5} {7,8}``.
"""

from __future__ import annotations

import numbers
import random
from types import ModuleType

import numpy as np

SAMPLE_MODES = ("rand", "middle", "uniform", "fps<k>", "videopanda")

RngLike = random.Random | int | ModuleType | None


def _as_rng(rng: RngLike) -> random.Random | ModuleType:
    # None -> the global `random` module, exactly like the official code (random.seed() applies).
    if rng is None:
        return random
    if isinstance(rng, bool):
        raise TypeError(f"rng must be a random.Random or an int seed, got {rng!r}")
    if isinstance(rng, numbers.Integral):  # int, numpy integers
        return random.Random(int(rng))
    return rng


def _segments(num_frames: int, vlen: int) -> list[tuple[int, int]]:
    # numpy linspace + astype(int) (truncation) as the official code, float rounding included.
    bounds = np.linspace(0, vlen, num_frames + 1).astype(int).tolist()
    return [(bounds[k], bounds[k + 1] - 1) for k in range(num_frames)]


def _fps_indices(vlen: int, input_fps: float, output_fps: float, max_num_frames: int) -> list[int]:
    # One frame at the centre of every 1/output_fps-second slot (Singularity's "fps<k>").
    duration = vlen / input_fps
    delta = 1.0 / output_fps
    seconds = np.arange(delta / 2, duration + delta / 2, delta)
    indices = [int(i) for i in np.around(seconds * input_fps).astype(int) if i < vlen]
    if max_num_frames > 0:
        indices = indices[:max_num_frames]
    return indices


def sample_frame_indices(
    num_frames: int,
    vlen: int,
    sample: str = "rand",
    fps: float | None = None,
    max_num_frames: int = -1,
    rng: RngLike = None,
) -> list[int]:
    """Frame indices to decode, with the semantics of the official ``get_frame_indices``.

    ``[0, vlen)`` is split into ``n = min(num_frames, vlen)`` segments at
    ``linspace(0, vlen, n+1).astype(int)``; segment k is ``[a_k, a_{k+1} - 1]``.

    - ``"rand"``: one index per segment drawn with ``rng.choice(range(a_k, a_{k+1} - 1))``: the
      official off-by-one is kept, so the last frame of a segment is never drawn. If any such
      range is empty (segments of one frame, i.e. ``vlen < 2n``) the official fallback applies: a
      sorted random subset of ``n`` distinct frames (the official draws it with ``np.random``;
      here ``rng.sample``; Frozen / All-in-one have no fallback and crash, spec allinone.md §8.12).
      With the same ``random.Random`` state as the official code and no fallback, the draws are
      identical.
    - ``"middle"`` (Singularity / SViTT) and ``"uniform"`` (Frozen / All-in-one, same formula):
      ``(a_k + a_{k+1} - 1) // 2``.
    - ``"fps<k>"`` (e.g. ``"fps0.5"``): one frame at the centre of every ``1/k`` s slot,
      ``round((j + 0.5) / k * fps)``, keeping those ``< vlen``; the first ``max_num_frames`` if
      positive. ``num_frames`` is ignored (the count follows the duration), no padding.
    - ``"videopanda"``: :func:`videopanda_frame_indices` with ``num_frames`` frames.

    Short videos (``vlen < num_frames``) with ``rand``/``middle``/``uniform``: the list is padded
    with its last index to ``num_frames`` entries (Singularity's policy; Frozen would return fewer).

    Args:
        num_frames: frames wanted (T), ``>= 1``.
        vlen: number of frames in the video (or the window), ``>= 1``.
        sample: one of ``"rand"``, ``"middle"``, ``"uniform"``, ``"fps<k>"``, ``"videopanda"``.
        fps: the video's frame rate; required by ``"fps<k>"`` and ``"videopanda"``.
        max_num_frames: cap for ``"fps<k>"`` (``-1``: none).
        rng: ``random.Random``, an int seed, or ``None`` for the global ``random`` module.

    Returns:
        Frame indices in ``[0, vlen)``, non-decreasing.

    Raises:
        ValueError: on a non-positive ``num_frames``/``vlen``, an unknown ``sample`` or a
            missing/invalid ``fps``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if vlen < 1:
        raise ValueError(f"vlen must be >= 1 (the video has no frames), got {vlen}")
    if sample.startswith("fps") or sample == "videopanda":
        if fps is None or not fps > 0:
            raise ValueError(f"sample={sample!r} needs the video's fps > 0, got fps={fps!r}")
        if sample == "videopanda":
            return videopanda_frame_indices(vlen, fps, num_frames)
        try:
            output_fps = float(sample[3:])
        except ValueError:
            raise ValueError(f"sample={sample!r}: expected 'fps<k>' such as 'fps2'") from None
        if not output_fps > 0:
            raise ValueError(f"sample={sample!r}: the sampling rate must be > 0")
        return _fps_indices(vlen, fps, output_fps, max_num_frames)
    if sample not in ("rand", "middle", "uniform"):
        raise ValueError(f"unknown sample={sample!r}; expected one of {', '.join(SAMPLE_MODES)}")

    count = min(num_frames, vlen)
    segments = _segments(count, vlen)
    if sample == "rand":
        generator = _as_rng(rng)
        if all(end > start for start, end in segments):
            indices = [generator.choice(range(start, end)) for start, end in segments]
        else:
            indices = sorted(generator.sample(range(vlen), count))
    else:
        indices = [(start + end) // 2 for start, end in segments]
    return indices + [indices[-1]] * (num_frames - len(indices))


def videopanda_frame_indices(vlen: int, fps: float, num_frames: int = 8) -> list[int]:
    """Video-Panda's sampler (``_get_rawvideo_dec`` with ``video_framerate=1``).

    Candidates are every ``round(fps)``-th frame (1 fps). More than ``num_frames`` candidates:
    those at positions ``int(linspace(0, n_cand - 1, num_frames))``. Fewer: if the video has fewer
    than ``num_frames`` frames, all of them (the preprocessing appends zero frames, see
    :func:`leanvl.video.transforms.videopanda_anypixel`); otherwise ``num_frames`` frames with
    stride ``max(1, (vlen - 1) // (num_frames - 1))`` from 0. Example: 300 frames at 30 fps give
    ``[0, 30, 60, 90, 150, 180, 210, 270]``.

    Deviation: the official code crashes for ``fps < 0.5`` (zero stride); here the stride is
    clamped to 1.

    Args:
        vlen: frames in the video.
        fps: average frame rate.
        num_frames: frames wanted (8 in the release).

    Returns:
        At most ``num_frames`` increasing indices.
    """
    if vlen < 1 or num_frames < 1:
        raise ValueError(f"vlen and num_frames must be >= 1, got vlen={vlen}, num={num_frames}")
    stride = max(1, round(fps))
    candidates = list(range(0, vlen, stride))
    if len(candidates) > num_frames:
        picks = np.linspace(0, len(candidates) - 1, num_frames).astype(int)
        return [candidates[i] for i in picks.tolist()]
    if len(candidates) == num_frames:
        return candidates
    if vlen < num_frames:
        return list(range(vlen))
    step = max(1, (vlen - 1) // max(1, num_frames - 1))
    return [k * step for k in range(num_frames)]
