"""Encode frames to a real video file with PyAV (used by the synthetic benchmark and tests)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import torch


def write_video(
    path: str | Path,
    frames: np.ndarray | torch.Tensor,
    fps: float = 8.0,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "ultrafast",
    gop: int | None = None,
) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 RGB as an H.264 mp4 (yuv420p), atomically.

    Encoding runs single-threaded so the same frames always give the same bytes.

    Args:
        path: output file (``.mp4``); the parent folder is created.
        frames: uint8 RGB frames; H and W must be even (yuv420p).
        fps: frame rate stored in the container.
        codec: an encoder PyAV's FFmpeg provides (``libx264``, ``mpeg4``).
        crf: x264 constant rate factor (lower = better quality).
        preset: x264 speed preset.
        gop: keyframe interval in frames (``None``: encoder default).
    """
    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {array.dtype} {array.shape}")
    _, height, width, _ = array.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even for yuv420p, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            rate = round(fps) if float(fps).is_integer() else fps
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.thread_count = 1
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": preset}
            if gop is not None:
                stream.codec_context.gop_size = gop
            for image in array:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
