"""Find the videos of a dataset that cannot be decoded, before training starts.

:func:`scan_videos` probes each file and decodes a few ``middle`` frames with
:func:`leanvl.video.read_frames` in worker processes. Nothing can hang the scan: each worker
arms a timer per video, and the parent also gives every video a deadline; a worker that misses
it is killed, the pool is restarted, and the video is reported as ``timeout``. A worker that
dies (a crash inside FFmpeg) breaks the pool: the videos that were in flight are retried one
at a time, so the crash is pinned on the right file (``worker crashed``).

:func:`annotation_videos` lists the video files an annotation file refers to (format detected
from its name and content, see :data:`FORMATS`), so ``leanvl data scan`` and training code can
check a dataset as it will be read.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import json
import multiprocessing
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanvl.data import annotations as ann
from leanvl.data.datasets import VIDEO_EXTENSIONS, egoclip_window, resolve_video_path


@dataclass(frozen=True)
class BadVideo:
    """A video that failed the scan.

    Attributes:
        path: the file.
        reason: why (``VideoDecodeError`` reason, ``timeout: ...``, ``worker crashed: ...``).
    """

    path: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its detail (``"truncated"`` for ``"truncated: ..."``)."""
        return self.reason.split(":", 1)[0].split(" (", 1)[0].strip()


@dataclass
class ScanReport:
    """Result of :func:`scan_videos`.

    Attributes:
        ok: files that probed and decoded.
        bad: files that did not, with the reason.
        seconds: wall time of the scan.
    """

    ok: list[str] = field(default_factory=list)
    bad: list[BadVideo] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Number of files scanned."""
        return len(self.ok) + len(self.bad)

    def by_reason(self) -> dict[str, int]:
        """Bad-file counts per reason kind, most frequent first."""
        return dict(Counter(bad.kind for bad in self.bad).most_common())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with every bad file (sorted by path)."""
        return {
            "scanned": self.total,
            "ok": len(self.ok),
            "bad": len(self.bad),
            "by_reason": self.by_reason(),
            "seconds": round(self.seconds, 3),
            "bad_videos": [
                {"path": b.path, "reason": b.reason} for b in sorted(self.bad, key=lambda b: b.path)
            ],
        }


class _VideoTimeout(Exception):
    pass


def _on_alarm(signum, frame):  # pragma: no cover - runs in worker processes
    raise _VideoTimeout


#: Default largest frame accepted (``width * height``): 8K UHD, 7680 x 4320.
MAX_VIDEO_PIXELS = 7680 * 4320


@contextlib.contextmanager
def guarded(path: str | Path, timeout: float | None = None, max_pixels: int | None = None):
    """Decode ``path`` inside this block under two limits; breaking one raises
    :class:`~leanvl.video.VideoDecodeError` naming the file, with the reason ``timeout: ...``
    or ``resolution ...``, so every video policy treats it as an unreadable file.

    Args:
        path: the video (its size is probed first when ``max_pixels`` is set).
        timeout: seconds for the whole block, enforced with a SIGALRM timer; it works in a main
            thread (a DataLoader / scan worker process, or the main process) and interrupts the
            decoder between packets and frames, not inside one FFmpeg call (for that,
            :func:`scan_videos` also kills a worker past a deadline). ``None``/0: no timer.
        max_pixels: largest ``width * height`` accepted (``None``/0: no limit); refused before
            anything is decoded, so a huge video costs a probe, not gigabytes of frames.
    """
    from leanvl.video import VideoDecodeError, probe

    armed = False
    if timeout and hasattr(signal, "setitimer"):
        try:
            previous = signal.signal(signal.SIGALRM, _on_alarm)
            armed = True
            signal.setitimer(signal.ITIMER_REAL, timeout)
        except ValueError:  # not the main thread: no timer here
            armed = False
    try:
        if max_pixels:
            info = probe(path)
            if info.width * info.height > max_pixels:
                raise VideoDecodeError(
                    path,
                    f"resolution {info.width}x{info.height} is over the limit of "
                    f"{max_pixels:,} pixels per frame (data.max_video_pixels)",
                )
        yield
    except _VideoTimeout:
        raise VideoDecodeError(path, f"timeout: no result after {timeout:g} s") from None
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def check_video(
    path: str, num_frames: int = 4, timeout: float | None = None, max_pixels: int | None = None
) -> str | None:
    """Probe ``path`` and decode ``num_frames`` middle frames; the failure reason or ``None``.

    Args:
        path: the video file.
        num_frames: frames to decode.
        timeout: seconds before giving up (a SIGALRM timer, see :func:`guarded`; only in a
            main thread, as in a worker process). ``None``: no timer.
        max_pixels: largest ``width * height`` accepted (:func:`guarded`); ``None``: no limit.
    """
    from leanvl.video import VideoDecodeError, probe, read_frames

    try:
        with guarded(path, timeout, max_pixels):
            info = probe(path)
            if info.num_frames < 1:
                return "no frames"
            frames, _ = read_frames(path, num_frames, sample="middle")
        if frames.shape[0] != num_frames:
            return f"decoded {frames.shape[0]} of {num_frames} frames"
        return None
    except VideoDecodeError as err:
        return err.reason
    except Exception as err:  # any other decoder failure is a bad file too
        return f"error: {type(err).__name__}: {err}"


def scan_videos(
    paths: Iterable[str | Path],
    workers: int = 2,
    num_frames: int = 4,
    timeout: float = 60.0,
    on_result: Callable[[str, str | None], None] | None = None,
    start_method: str = "forkserver",
    check: Callable[[str, int, float | None], str | None] = check_video,
    startup_grace: float = 15.0,
    max_pixels: int | None = None,
) -> ScanReport:
    """Probe and decode every video; report the bad ones.

    Args:
        paths: video files (duplicates are scanned once).
        workers: worker processes; ``0`` scans in this process (no timeout enforcement).
        num_frames: ``middle`` frames decoded per video.
        timeout: seconds per video before it counts as ``timeout``.
        on_result: called as ``on_result(path, reason_or_None)`` after each video (progress).
        start_method: multiprocessing start method. ``"forkserver"`` (default) forks workers
            from a clean single-threaded server process that has imported the decoder once, so
            starting and restarting workers is cheap and safe with threads; ``"spawn"`` also
            works (slower start); ``"fork"`` is unsafe once torch or rich threads run.
        check: the per-video check, ``check(path, num_frames, timeout) -> reason | None``; a
            module-level function (workers import it by name).
        startup_grace: extra seconds the parent allows over ``1.5 * timeout`` (worker start-up)
            before it kills a worker and reports the video as ``timeout``.
        max_pixels: videos with larger frames (``width * height``) are bad (``resolution
            ...``) without being decoded; ``None``: no limit. Passed to ``check`` by keyword.

    Returns:
        A :class:`ScanReport` (``ok`` in input order, ``bad`` in completion order).
    """
    unique = list(dict.fromkeys(str(p) for p in paths))
    if max_pixels:
        check = functools.partial(check, max_pixels=max_pixels)
    started = time.monotonic()
    results: dict[str, str | None] = {}

    def record(path: str, reason: str | None) -> None:
        results[path] = reason
        if on_result is not None:
            on_result(path, reason)

    if workers <= 0:
        for path in unique:
            record(path, check(path, num_frames, None))
    else:
        deadline = 1.5 * timeout + startup_grace
        _PoolScan(check, workers, num_frames, timeout, deadline, start_method, record).run(unique)
    report = ScanReport(seconds=time.monotonic() - started)
    for path in unique:
        reason = results[path]
        if reason is None:
            report.ok.append(path)
        else:
            report.bad.append(BadVideo(path, reason))
    return report


class _PoolScan:
    """Runs :func:`check_video` in a process pool with per-video deadlines and crash isolation.

    At most ``workers`` videos are in flight, so each submitted video is running and its
    submit time bounds its start time.
    """

    def __init__(self, check, workers, num_frames, timeout, deadline, start_method, record):
        self.check, self.workers, self.num_frames = check, workers, num_frames
        self.timeout, self.deadline = timeout, deadline
        self.context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # the fork server imports the decoder once; each worker (and every pool restart
            # after a crash or a timeout) is then a cheap fork of that clean process
            self.context.set_forkserver_preload(["leanvl.data.scan"])
        self.record = record
        self.pool: cf.ProcessPoolExecutor | None = None

    def _new_pool(self, size: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=size, mp_context=self.context)

    def _kill_pool(self) -> None:
        if self.pool is None:
            return
        # ProcessPoolExecutor cannot cancel a running task; killing its processes is the only
        # way to stop a hung decode (the private ``_processes`` map is the only handle).
        for process in list(getattr(self.pool, "_processes", {}).values()):
            process.kill()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None

    def run(self, paths: list[str]) -> None:
        """Scan ``paths``; videos in flight when a worker crashed are retried one by one."""
        suspects = self._phase(paths, self.workers, isolated=False)
        if suspects:
            self._phase(suspects, 1, isolated=True)

    def _phase(self, paths: list[str], width: int, isolated: bool) -> list[str]:
        queue = list(reversed(paths))
        in_flight: dict[cf.Future, tuple[str, float]] = {}
        suspects: list[str] = []
        self.pool = self._new_pool(width)
        try:
            while queue or in_flight:
                while queue and len(in_flight) < width:
                    path = queue.pop()
                    future = self.pool.submit(self.check, path, self.num_frames, self.timeout)
                    in_flight[future] = (path, time.monotonic())
                done, _ = cf.wait(in_flight, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                broken = False
                for future in done:
                    path, _ = in_flight.pop(future)
                    try:
                        reason = future.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        if isolated:
                            self.record(path, "worker crashed")
                        else:
                            suspects.append(path)
                        continue
                    except Exception as err:  # the check itself raised in the worker
                        reason = f"error: {type(err).__name__}: {err}"
                    self.record(path, reason)
                now = time.monotonic()
                late = [f for f, (_, t0) in in_flight.items() if now - t0 > self.deadline]
                for future in late:
                    path, _ = in_flight.pop(future)
                    self.record(path, f"timeout: no result after {self.deadline:g} s (killed)")
                if broken or late:
                    # The pool is unusable (or holds a hung worker): restart it. After a timeout
                    # the other videos in flight are innocent and go back to the queue; after a
                    # crash any of them may be the culprit, so they are retried in isolation.
                    for path, _ in in_flight.values():
                        if broken and isolated:
                            self.record(path, "worker crashed")
                        elif broken:
                            suspects.append(path)
                        else:
                            queue.append(path)
                    in_flight.clear()
                    self._kill_pool()
                    self.pool = self._new_pool(width)
        finally:
            self._kill_pool()
        return suspects


# ---------------------------------------------------------------------------------------------
# Annotation files → video paths


def _video_list(records, attribute: str = "video") -> list[str]:
    return [getattr(r, attribute) for r in records if getattr(r, attribute) is not None]


def _egoclip_paths(records) -> list[str]:
    return [egoclip_window(r)[0] for r in records]


def _egomcq_paths(records) -> list[str]:
    return [egoclip_window(c)[0] for r in records for c in (r.query, *r.choices)]


def _msvd_paths(path: Path) -> list[str]:
    mapping_file = path.parent / "msvd_youtube_mapping.txt"
    mapping = ann.read_msvd_youtube_mapping(mapping_file) if mapping_file.is_file() else None
    return _video_list(ann.read_msvd_qa_json(path, mapping))


FORMATS: dict[str, tuple[Callable[[Path], list[str]], str]] = {
    "retrieval-json": (lambda p: _video_list(ann.read_retrieval_json(p)), ".mp4"),
    "qa-json": (lambda p: _video_list(ann.read_qa_json(p)), ".mp4"),
    "mc-jsonl": (lambda p: _video_list(ann.read_mc_jsonl(p)), ".mp4"),
    "egoclip-csv": (lambda p: _egoclip_paths(ann.read_egoclip_csv(p)), ".mp4"),
    "egomcq-json": (lambda p: _egomcq_paths(ann.read_egomcq_json(p)), ".mp4"),
    "msrvtt-json": (lambda p: _video_list(ann.read_msrvtt_retrieval(p)), ".mp4"),
    "msrvtt-csv": (lambda p: _video_list(ann.read_msrvtt_csv(p)), ".mp4"),
    "msrvtt-qa-jsonl": (lambda p: _video_list(ann.read_msrvtt_qa_jsonl(p)), ".mp4"),
    "msvd-qa-json": (_msvd_paths, ".avi"),
    "tgif-frameqa-jsonl": (lambda p: _video_list(ann.read_tgif_frameqa_jsonl(p)), ".gif"),
    "tgif-mc-jsonl": (lambda p: _video_list(ann.read_tgif_mc_jsonl(p)), ".gif"),
    "webvid-csv": (lambda p: _video_list(ann.read_webvid_csv(p)), ".mp4"),
    "llava-json": (lambda p: _video_list(ann.read_llava_json(p)), ".mp4"),
}
"""Annotation formats: name → (video list reader, extension added to bare ids)."""


def _first_json_record(path: Path) -> Any:
    text = ann.read_text(path)
    if path.suffix.lower() == ".jsonl":
        return json.loads(text.lstrip().split("\n", 1)[0])
    data = json.loads(text)
    if isinstance(data, list):
        return data[0] if data else {}
    if isinstance(data, dict) and "annotations" not in data and data:
        first = next(iter(data.values()))
        return first if isinstance(first, dict) else data
    return data


def _sniff(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        header = ann.read_text(path).split("\n", 1)[0]
        if "clip_text" in header and "video_uid" in header:
            return "egoclip-csv"
        if "video_id" in header and "sentence" in header:
            return "msrvtt-csv"
        return "webvid-csv"
    try:
        first = _first_json_record(path)
    except (ValueError, ann.AnnotationError):
        return None  # let the reader report the exact problem once a format is given
    if not isinstance(first, dict):
        return None
    keys = set(first)
    rules = [
        ({"annotations"}, "msrvtt-json"),
        ({"choices", "query"}, "egomcq-json"),
        ({"conversations"}, "llava-json"),
        ({"clip_name", "options"}, "mc-jsonl"),
        ({"gif_name", "options"}, "tgif-mc-jsonl"),
        ({"gif_name", "a1"}, "tgif-mc-jsonl"),
        ({"gif_name"}, "tgif-frameqa-jsonl"),
        ({"video_id", "question"}, "msrvtt-qa-jsonl" if suffix == ".jsonl" else "msvd-qa-json"),
        ({"question"}, "qa-json"),
        ({"caption"}, "retrieval-json"),
    ]
    return next((name for needed, name in rules if needed <= keys), None)


def detect_format(path: str | Path) -> str:
    """Annotation format of ``path`` (a key of :data:`FORMATS`), from its name, then its content.

    Raises:
        ValueError: the format cannot be told (pass it explicitly).
    """
    path = Path(path)
    name = path.name.lower()
    by_name = [
        ("egoclip" in name and name.endswith(".csv"), "egoclip-csv"),
        ("egomcq" in name and name.endswith(".json"), "egomcq-json"),
        (name == "msr_vtt.json", "msrvtt-json"),
        (name.endswith(".tsv") or ("webvid" in name and name.endswith(".csv")), "webvid-csv"),
        (name.startswith("msrvtt_qa") and name.endswith(".jsonl"), "msrvtt-qa-jsonl"),
        ("msvd" in name and "qa" in name and name.endswith(".json"), "msvd-qa-json"),
        (name.startswith("frameqa") and name.endswith(".jsonl"), "tgif-frameqa-jsonl"),
        (name.startswith(("action", "transition")) and name.endswith(".jsonl"), "tgif-mc-jsonl"),
    ]
    for matched, fmt in by_name:
        if matched:
            return fmt
    if path.suffix.lower() in (".json", ".jsonl", ".csv", ".tsv") and path.is_file():
        fmt = _sniff(path)
        if fmt is not None:
            return fmt
    raise ValueError(
        f"cannot tell the annotation format of '{path}'; pass one of: {', '.join(FORMATS)}"
    )


def annotation_videos(
    path: str | Path, fmt: str | None = None, video_root: str | Path | None = None
) -> list[Path]:
    """Video files an annotation file refers to (unique, in first-mention order).

    Args:
        path: the annotation file.
        fmt: a key of :data:`FORMATS` (``None``: :func:`detect_format`).
        video_root: folder the file's video paths are relative to (default: the annotation
            file's folder).

    Raises:
        ValueError: unknown format.
        AnnotationError: the file itself is bad.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(
            f"unknown annotation format {fmt!r}; expected one of: {', '.join(FORMATS)}"
        )
    reader, ext = FORMATS[fmt]
    root = Path(video_root) if video_root is not None else path.parent
    videos = dict.fromkeys(resolve_video_path(root, v, ext) for v in reader(path))
    return list(videos)


def folder_videos(folder: str | Path) -> list[Path]:
    """Files under ``folder`` (recursive, sorted) whose extension is a video extension."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    )
