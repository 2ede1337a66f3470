"""Video decoding, frame sampling and transforms.

``read_frames`` / ``probe`` (PyAV, optional decord2) decode only the sampled frames;
``sample_frame_indices`` reproduces the official samplers; ``leanvl.video.transforms`` holds the
batched clip transforms and each model's official preprocessing (``build_transform``).
"""

from leanvl.video.decode import VideoInfo, probe, read_frames
from leanvl.video.errors import VideoDecodeError
from leanvl.video.sampling import sample_frame_indices, videopanda_frame_indices
from leanvl.video.transforms import VideoTransform, build_transform
from leanvl.video.writer import write_video

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "VideoTransform",
    "build_transform",
    "probe",
    "read_frames",
    "sample_frame_indices",
    "videopanda_frame_indices",
    "write_video",
]
