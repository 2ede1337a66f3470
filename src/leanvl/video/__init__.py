"""Video decoding, frame sampling and transforms."""

from leanvl.video.errors import VideoDecodeError
from leanvl.video.writer import write_video

__all__ = ["VideoDecodeError", "write_video"]
