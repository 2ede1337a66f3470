"""The one error type every video reader raises for a bad file."""

from __future__ import annotations

from pathlib import Path


class VideoDecodeError(RuntimeError):
    """A video could not be decoded. ``str(err)`` is ``"'<path>': <reason>"``.

    Attributes:
        path: the file.
        reason: short human-readable cause (``"missing file"``, ``"zero bytes"``,
            ``"not a video"``, ``"no video stream"``, ``"truncated: ..."``...).
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"'{self.path}': {reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))
