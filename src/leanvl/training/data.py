"""Datasets, samplers, the frame cache and the Lightning DataModule of the training recipes.

Clips are read with leanvl's own decoder (:func:`leanvl.video.decode.read_frames`) and
annotations with leanvl's readers (:mod:`leanvl.data.annotations`). Two things make CPU training
fast and runs exactly reproducible:

* **Frame cache.** With ``data.cache=true`` every clip is decoded once (in worker processes)
  into a uint8 array ``(clips, cache_frames, S, S, 3)`` stored as ``.npy`` and memory-mapped;
  training then samples ``num_frames`` of the cached frames with the usual segment sampler.
* **Step-indexed sampling.** The training sampler yields ``(index, seed)`` pairs that depend only
  on the run seed and the position in the run, never on a global RNG or on the worker that
  reads them, so a run resumed at step k sees exactly the batches an uninterrupted run would.
  Evaluation samplers shard the data over processes, padding the last shard by repeating
  indices; the evaluation de-duplicates by index after gathering.

**Unreadable videos** (``data.on_error``, ``data.max_bad_fraction``) are found before training:
the frame cache decodes every clip and records the ones that fail (with the reason) beside the
``.npy``; without the cache, ``on_error=skip`` probes every clip with the same check as
``leanvl data scan`` and ``on_error=raise`` checks that every file exists. ``raise`` stops with
every bad file and its reason; ``skip`` leaves their records out, logs them and reports them in
:attr:`VideoTextDataModule.skipped`, unless more than ``max_bad_fraction`` of a split's videos
are bad, which stops the run with the list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from leanvl.data.annotations import (
    read_answer_vocab,
    read_mc_jsonl,
    read_qa_json,
    read_retrieval_json,
)
from leanvl.data.datasets import resolve_video_path
from leanvl.data.scan import BadVideo, guarded, scan_videos
from leanvl.text.tokenizer import load_tokenizer
from leanvl.training.config import DataConfig, TrainConfig
from leanvl.video.decode import read_frames
from leanvl.video.errors import VideoDecodeError
from leanvl.video.sampling import sample_frame_indices

__all__ = [
    "BadVideosError",
    "ClipFrames",
    "Collate",
    "EvalShardSampler",
    "StepSampler",
    "VideoTextDataModule",
    "build_frame_cache",
    "cache_failures",
    "sample_seed",
]

log = logging.getLogger("leanvl.training")


class BadVideosError(ValueError):
    """Videos of a split cannot be read and the policy (``data.on_error``,
    ``data.max_bad_fraction``) says stop. ``str(err)`` lists every bad file and its reason.

    Attributes:
        bad: the bad videos (path and reason), sorted by path.
    """

    def __init__(self, message: str, bad: Sequence[BadVideo]) -> None:
        super().__init__(message)
        self.bad = list(bad)


def sample_seed(seed: int, position: int) -> int:
    """A 31-bit seed for the sample at ``position`` of a run seeded with ``seed``."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


# ----------------------------------------------------------------------------------- frames
def _square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop uint8 (T, H, W, 3) frames, decoded with shorter side ``size``, to size²."""
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top : top + size, left : left + size]


def decode_clip(
    path: Path,
    num_frames: int,
    sample: str,
    size: int,
    seed: int | None = None,
    timeout: float | None = None,
    max_pixels: int | None = None,
):
    """Decode ``num_frames`` frames of ``path`` as uint8 (T, size, size, 3): shorter side
    resized to ``size`` at decode time, then centre-cropped.

    ``timeout`` (seconds) and ``max_pixels`` (largest ``width * height``) bound the work: a clip
    that breaks one raises :class:`VideoDecodeError` (``timeout: ...`` / ``resolution ...``),
    see :func:`leanvl.data.scan.guarded`."""
    with guarded(path, timeout, max_pixels):
        frames, _ = read_frames(path, num_frames, sample=sample, size=size, seed=seed)
    return _square(frames, size)


def _failure(path: Path, exc: BaseException) -> str:
    """The reason of a decode failure: the ``VideoDecodeError`` reason, else the error."""
    if isinstance(exc, VideoDecodeError):
        return exc.reason
    return f"error: {type(exc).__name__}: {exc}"


class _DecodeAll(Dataset):
    """Item ``i``: ``(i, frames or None, failure reason or "")``; a bad clip never raises, so
    one pass over the data finds every bad file."""

    def __init__(
        self, paths: Sequence[Path], frames: int, size: int, timeout=None, max_pixels=None
    ) -> None:
        self.paths, self.frames, self.size = list(paths), frames, size
        self.timeout, self.max_pixels = timeout, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str]:
        try:
            clip = decode_clip(
                self.paths[i], self.frames, "uniform", self.size,
                timeout=self.timeout, max_pixels=self.max_pixels,
            ).numpy()  # fmt: skip
        except Exception as exc:  # any decoder failure marks the file bad
            return i, None, _failure(self.paths[i], exc)
        if clip.shape != (self.frames, self.size, self.size, 3):
            return i, None, f"decoded frames of shape {tuple(clip.shape)}"
        return i, clip, ""


def _cache_key(paths: Sequence[Path], frames: int, size: int, max_pixels: int | None) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(f"v1:{frames}:{size}".encode())
    if max_pixels:  # a resolution limit changes which clips are bad (keys without one stay)
        h.update(f":max_pixels={max_pixels}".encode())
    for p in paths:
        st = p.stat() if p.exists() else None
        h.update(f"{p}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
    return h.hexdigest()


def build_frame_cache(
    paths: Sequence[Path],
    cache_dir: Path,
    frames: int,
    size: int,
    num_workers: int = 0,
    timeout: float | None = None,
    max_pixels: int | None = None,
) -> Path:
    """Decode every clip once into ``cache_dir/frames-<key>.npy``: uint8
    (N, frames, S, S, 3), one row per distinct path in sorted order (so every annotation file
    over the same videos shares one cache).

    The key hashes the paths, sizes and modification times of the clips and the decode
    settings, so a changed dataset gets a new cache. The file is written under a temporary name
    and renamed, so an interrupted build never leaves a truncated cache behind.

    A clip that cannot be decoded does not stop the build: its row stays black and its path and
    reason go to ``frames-<key>.bad.json`` (read with :func:`cache_failures`), written before
    the ``.npy`` is renamed into place. What to do with bad clips is the caller's policy.
    ``timeout`` / ``max_pixels`` (see :func:`decode_clip`) make a clip that decodes too slowly
    or has huge frames a bad clip instead of stalling the build (a timed-out clip stays bad in
    this cache: delete the ``frames-<key>.*`` files to try it again).

    Returns:
        The cache file (existing or new).
    """
    paths = sorted(set(paths))
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"frames-{_cache_key(paths, frames, size, max_pixels)}.npy"
    if out.is_file():
        return out
    tmp = cache_dir / f".{out.name}.{os.getpid()}.tmp"
    array = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(paths), frames, size, size, 3))
    loader = DataLoader(
        _DecodeAll(paths, frames, size, timeout, max_pixels),
        batch_size=None,
        num_workers=num_workers,
        multiprocessing_context="fork" if num_workers and os.name == "posix" else None,
    )
    bad: dict[str, str] = {}
    try:
        for i, clip, reason in loader:
            if reason:
                bad[str(paths[int(i)])] = reason
            else:
                array[int(i)] = clip
        array.flush()
        del array
        side = _failures_file(out)
        if bad:
            _atomic_json(side, dict(sorted(bad.items())))
        else:
            side.unlink(missing_ok=True)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _failures_file(cache_file: Path) -> Path:
    return cache_file.with_name(cache_file.name.removesuffix(".npy") + ".bad.json")


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def cache_failures(cache_file: Path) -> dict[str, str]:
    """The clips that :func:`build_frame_cache` could not decode: ``{path: reason}``."""
    side = _failures_file(Path(cache_file))
    if not side.is_file():
        return {}
    return json.loads(side.read_text(encoding="utf-8"))


class ClipFrames:
    """The frames of a list of clips, from the cache or decoded on demand.

    Args:
        paths: one video file per clip.
        num_frames: T frames returned per clip.
        size: frame side S.
        cache_file: ``.npy`` from :func:`build_frame_cache` (None = decode on demand).
        cache_paths: the paths the cache was built over (default ``paths``); a superset when
            unreadable clips were left out of ``paths``.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        num_frames: int,
        size: int,
        cache_file: Path | None = None,
        cache_paths: Sequence[Path] | None = None,
        timeout: float | None = None,
        max_pixels: int | None = None,
    ) -> None:
        self.paths = list(paths)
        self.timeout, self.max_pixels = timeout, max_pixels  # on-demand decoding limits
        self.num_frames, self.size = num_frames, size
        self.cache_file = cache_file
        built = self.paths if cache_paths is None else list(cache_paths)
        row_of = {p: i for i, p in enumerate(sorted(set(built)))}
        self.rows = [row_of[p] for p in self.paths]
        self._array: np.ndarray | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int, sample: str, seed: int | None) -> torch.Tensor:
        """uint8 (T, S, S, 3) frames of clip ``i`` sampled with ``sample`` (``rand`` uses
        ``seed``)."""
        if self.cache_file is None:
            return decode_clip(
                self.paths[i], self.num_frames, sample, self.size, seed,
                self.timeout, self.max_pixels,
            )  # fmt: skip
        if self._array is None:
            self._array = np.load(self.cache_file, mmap_mode="r")
        stored = self._array.shape[1]
        idx = sample_frame_indices(self.num_frames, stored, sample, rng=random.Random(seed))
        return torch.from_numpy(np.ascontiguousarray(self._array[self.rows[i], idx]))


# --------------------------------------------------------------------------------- datasets
class _ClipDataset(Dataset):
    """Items of clip ``video_index[i]``; ``__getitem__`` takes ``(index, seed)`` pairs."""

    def __init__(self, clips: ClipFrames, video_index: Sequence[int], sample: str) -> None:
        self.clips, self.video_index, self.sample = clips, list(video_index), sample

    def __len__(self) -> int:
        return len(self.video_index)

    def frames(self, i: int, seed: int) -> torch.Tensor:
        """uint8 (T, S, S, 3) frames of item ``i`` (``seed`` drives ``rand`` sampling)."""
        return self.clips.get(self.video_index[i], self.sample, seed)


class CaptionDataset(_ClipDataset):
    """Clip + one of its captions (a random one per draw)."""

    def __init__(self, clips, video_index, sample, captions: Sequence[Sequence[str]]) -> None:
        super().__init__(clips, video_index, sample)
        self.captions = [list(c) for c in captions]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        caps = self.captions[i]
        return {
            "index": i,
            "video": self.frames(i, seed),
            "text": caps[random.Random(seed).randrange(len(caps))],
        }


class VideoDataset(_ClipDataset):
    """Clips alone (retrieval evaluation)."""

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        return {"index": i, "video": self.frames(i, seed)}


class TextDataset(Dataset):
    """Texts alone (retrieval evaluation)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return {"index": key[0], "text": self.texts[key[0]]}


class QADataset(_ClipDataset):
    """Clip + question + answer label (-100 for an answer outside the vocabulary)."""

    def __init__(self, clips, video_index, sample, questions, labels) -> None:
        super().__init__(clips, video_index, sample)
        self.questions, self.labels = list(questions), list(labels)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        return {
            "index": i,
            "video": self.frames(i, seed),
            "text": self.questions[i],
            "label": self.labels[i],
        }


class MCDataset(_ClipDataset):
    """Clip + K candidate captions + index of the correct one."""

    def __init__(self, clips, video_index, sample, options, answers) -> None:
        super().__init__(clips, video_index, sample)
        self.options, self.answers = [list(o) for o in options], list(answers)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        return {
            "index": i,
            "video": self.frames(i, seed),
            "options": self.options[i],
            "label": self.answers[i],
        }


class Collate:
    """Stack clips and tokenise texts of a list of items into a batch.

    Produces ``index`` (B,), ``video`` uint8 (B, T, S, S, 3), ``text_ids``/``text_mask`` (B, L)
    for items with ``text``, ``option_ids``/``option_mask`` (B, K, L) for items with
    ``options``, ``label`` (B,).
    """

    def __init__(self, tokenizer, max_len: int) -> None:
        self.tokenizer, self.max_len = tokenizer, max_len

    def _tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        return enc["input_ids"], enc["attention_mask"]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        first = items[0]
        batch: dict[str, torch.Tensor] = {"index": torch.tensor([it["index"] for it in items])}
        if "video" in first:
            batch["video"] = torch.stack([it["video"] for it in items])
        if "text" in first:
            batch["text_ids"], batch["text_mask"] = self._tokens([it["text"] for it in items])
        if "options" in first:
            k = len(first["options"])
            ids, mask = self._tokens([o for it in items for o in it["options"]])
            batch["option_ids"] = ids.view(len(items), k, -1)
            batch["option_mask"] = mask.view(len(items), k, -1)
        if "label" in first:
            batch["label"] = torch.tensor([it["label"] for it in items])
        return batch


# --------------------------------------------------------------------------------- samplers
class StepSampler(Sampler[tuple[int, int]]):
    """Training sampler indexed by batch number: reproducible and resumable.

    Batch ``s`` of process ``rank`` holds the items at run positions
    ``(s * world + rank) * batch_size + j``; position ``p`` maps to epoch ``p // n`` (one
    seeded permutation per epoch) and gets its own augmentation seed.

    Args:
        n: dataset size.
        batch_size: items per batch per process.
        num_batches: batches in the whole run (per process).
        seed: run seed.
        rank: this process.
        world: number of processes.
        start_batch: first batch to yield (set when resuming).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        num_batches: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
    ) -> None:
        if n < 1:
            raise ValueError("StepSampler: empty dataset")
        self.n, self.batch_size, self.num_batches = n, batch_size, num_batches
        self.seed, self.rank, self.world, self.start_batch = seed, rank, world, start_batch
        self._perm: tuple[int, torch.Tensor] | None = None

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for s in range(self.start_batch, self.num_batches):
            base = (s * self.world + self.rank) * self.batch_size
            for p in range(base, base + self.batch_size):
                perm = self._epoch_perm(p // self.n)
                yield int(perm[p % self.n]), sample_seed(self.seed, p)

    def __len__(self) -> int:
        """Items of the *whole run*, also when resuming (iteration then starts at
        ``start_batch``): Lightning restores its batch counter of the interrupted epoch and
        ends the epoch when that counter reaches the loader length, so a length that excluded
        the batches already done would end the epoch early and restart the sampler, repeating
        batches (a resumed run would then diverge from an uninterrupted one)."""
        return self.num_batches * self.batch_size


class EvalShardSampler(Sampler[tuple[int, int]]):
    """This process's share of ``range(n)`` in order: ``rank, rank + world, ...``; the list is
    padded by repeating the first indices so that every process gets the same count (the
    duplicates are dropped after gathering)."""

    def __init__(self, n: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.rank, self.world = n, rank, world
        total = -(-n // world) * world
        self.indices = [i % n for i in range(total)][rank::world] if n else []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter((i, 0) for i in self.indices)

    def __len__(self) -> int:
        return len(self.indices)


# ------------------------------------------------------------------------------ data module
@dataclass
class EvalData:
    """What an evaluation needs besides the batches: targets and types, in dataset order."""

    text_to_video: list[int] | None = None  # retrieval
    types: list[str | None] | None = None  # QA / MC
    kinds: list[str | None] | None = None  # QA: finer categories, when the file has them
    num_videos: int = 0
    num_texts: int = 0


def _unique_videos(videos: Sequence[str]) -> tuple[list[str], list[int]]:
    order: dict[str, int] = {}
    index = [order.setdefault(v, len(order)) for v in videos]
    return list(order), index


def read_answers(cfg: DataConfig) -> list[str]:
    """The QA answer vocabulary as a list (label = position)."""
    path = cfg.path(cfg.answers_file)
    if path is None:
        raise ValueError("task qa needs data.answers_file (the answer vocabulary)")
    vocab = read_answer_vocab(path)
    answers = [""] * (max(vocab.values()) + 1)
    for a, i in vocab.items():
        answers[i] = a
    return answers


class VideoTextDataModule(L.LightningDataModule):
    """Train / validation / test loaders of one task (``pretrain``, ``retrieval``, ``qa``,
    ``mc``) from a :class:`TrainConfig`.

    Annotation files are read (and clip caches built) before any training starts, so a bad
    record fails fast with its file, index and field.

    Attributes:
        answers: QA answer vocabulary (``qa`` task or QA co-training), label = position.
        start_batch: first training batch to produce (set when resuming).
        skipped: with ``data.on_error=skip``, the unreadable videos left out, per annotation
            file (``"data.train_file 'ann/train.json'"`` -> list of :class:`BadVideo`).
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        self.cfg = config
        self.tokenizer = load_tokenizer(config.data.vocab, max_length=config.data.max_text_len)
        qa = config.task.name == "qa" or config.task.qa_weight > 0
        self.answers: list[str] | None = read_answers(config.data) if qa else None
        self._aux_qa: Dataset | None = None
        self.start_batch = 0  # set by the training module when resuming
        self._splits: dict[str, tuple[list[Dataset], EvalData]] = {}
        self._train: Dataset | None = None
        self.skipped: dict[str, list[BadVideo]] = {}

    # ---- files
    def _file(self, split: str) -> Path | None:
        d = self.cfg.data
        return d.path({"train": d.train_file, "val": d.val_file, "test": d.test_file}[split])

    def _records(self, split: str):
        path = self._file(split)
        if path is None:
            raise ValueError(f"data.{split}_file is not set")
        task = self.cfg.task.name
        if task in ("pretrain", "retrieval"):
            return read_retrieval_json(path)
        if task == "qa":
            return read_qa_json(path)
        return read_mc_jsonl(path)

    def _readable(self, source: str, records: list, attribute: str = "video") -> tuple[list, Any]:
        """Apply ``data.on_error`` to the videos of ``records`` (from annotation ``source``).

        Returns:
            ``(kept records, make_clips)``: ``make_clips(videos)`` gives the
            :class:`ClipFrames` of a list of kept videos (sharing the cache built over all of
            them).

        Raises:
            BadVideosError: ``on_error=raise`` and a video is bad, or more than
                ``max_bad_fraction`` of the videos are bad.
        """
        d = self.cfg.data
        videos = list(dict.fromkeys(getattr(r, attribute) for r in records))
        path_of = {v: resolve_video_path(d.videos, v) for v in videos}
        paths = list(path_of.values())
        cache = None
        if d.cache:
            cache_dir = Path(d.cache_dir) if d.cache_dir else Path(d.root) / ".leanvl_cache"
            cache = build_frame_cache(
                paths, cache_dir, d.cache_frames, d.image_size, d.num_workers,
                timeout=d.decode_timeout, max_pixels=d.max_video_pixels,
            )  # fmt: skip
            bad = cache_failures(cache)
        elif d.on_error == "skip":  # as `leanvl data scan`, with the recipe's limits
            report = scan_videos(
                paths, workers=d.num_workers, timeout=d.decode_timeout or 86400.0,
                max_pixels=d.max_video_pixels,
            )  # fmt: skip
            bad = {b.path: b.reason for b in report.bad}
        else:  # raise, decoding on demand: missing files now, the others when read
            bad = {str(p): "missing file" for p in paths if not p.is_file()}
        self._apply_policy(source, len(paths), bad)
        kept = [r for r in records if str(path_of[getattr(r, attribute)]) not in bad]

        def make_clips(kept_videos: list[str]) -> ClipFrames:
            chosen = [path_of[v] for v in kept_videos]
            return ClipFrames(
                chosen, d.num_frames, d.image_size, cache, cache_paths=paths,
                timeout=d.decode_timeout, max_pixels=d.max_video_pixels,
            )  # fmt: skip

        return kept, make_clips

    def _apply_policy(self, source: str, total: int, bad: dict[str, str]) -> None:
        """Raise or record the unreadable videos of one annotation file (see :meth:`_readable`)."""
        if not bad:
            return
        d = self.cfg.data
        items = [BadVideo(p, r) for p, r in sorted(bad.items())]
        listing = "\n".join(f"  {b.path}: {b.reason}" for b in items)
        what = f"{len(items)} of {total} videos of {source} cannot be read"
        if d.on_error == "raise":
            raise BadVideosError(
                f"{what} (data.on_error=raise; data.on_error=skip leaves them out):\n{listing}",
                items,
            )
        fraction = len(items) / max(total, 1)
        if fraction > d.max_bad_fraction:
            raise BadVideosError(
                f"{what} ({fraction:.1%}, more than data.max_bad_fraction="
                f"{d.max_bad_fraction:g}); training not started. Bad videos:\n{listing}",
                items,
            )
        if source not in self.skipped:
            log.warning("%s; left out (data.on_error=skip):\n%s", what, listing)
        self.skipped[source] = items

    # ---- Lightning hooks
    def prepare_data(self) -> None:
        """Read every annotation file (errors surface before training) and build the caches."""
        for split in ("train", "val", "test"):
            if self._file(split) is not None:
                self._build(split)
        self._build_aux_qa()

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (the caches exist after :meth:`prepare_data`)."""
        self._build("train" if self.cfg.data.train_file else None)
        self._build_aux_qa()

    def _build_aux_qa(self) -> None:
        """The QA training set co-trained with a retrieval task (``task.qa_weight``)."""
        path = self.cfg.data.path(self.cfg.data.qa_train_file)
        if self._aux_qa is not None or self.cfg.task.qa_weight <= 0 or path is None:
            return
        records, make_clips = self._readable(f"data.qa_train_file '{path}'", read_qa_json(path))
        videos, vidx = _unique_videos([r.video for r in records])
        clips = make_clips(videos)
        lookup = {a: i for i, a in enumerate(self.answers or [])}
        labels = [lookup.get(r.answer, -100) for r in records]
        self._aux_qa = QADataset(
            clips, vidx, self.cfg.data.train_sample, [r.question for r in records], labels
        )

    def _build(self, split: str | None) -> None:
        if split is None or split in self._splits or (split == "train" and self._train):
            return
        source = f"data.{split}_file '{self._file(split)}'"
        records, make_clips = self._readable(source, self._records(split))
        train = split == "train"
        sample = self.cfg.data.train_sample if train else self.cfg.data.eval_sample
        videos, vidx = _unique_videos([r.video for r in records])
        clips = make_clips(videos)
        task = self.cfg.task.name
        if task in ("pretrain", "retrieval"):
            if train:
                self._train = CaptionDataset(clips, vidx, sample, [r.captions for r in records])
                return
            texts, t2v = [], []
            for r, v in zip(records, vidx, strict=True):
                texts += list(r.captions)
                t2v += [v] * len(r.captions)
            data = [VideoDataset(clips, range(len(videos)), sample), TextDataset(texts)]
            info = EvalData(text_to_video=t2v, num_videos=len(videos), num_texts=len(texts))
        elif task == "qa":
            lookup = {a: i for i, a in enumerate(self.answers or [])}
            labels = [lookup.get(r.answer, -100) for r in records]
            ds = QADataset(clips, vidx, sample, [r.question for r in records], labels)
            if train:
                self._train = ds
                return
            info = EvalData(types=[r.type for r in records], kinds=[r.kind for r in records])
            data = [ds]
        else:
            ds = MCDataset(
                clips, vidx, sample, [r.options for r in records], [r.answer for r in records]
            )
            if train:
                self._train = ds
                return
            data, info = [ds], EvalData(types=[getattr(r, "type", None) for r in records])
        self._splits[split] = (data, info)

    def eval_split(self, split: str) -> tuple[list[Dataset], EvalData]:
        """Datasets and :class:`EvalData` of ``split`` (``val`` / ``test``)."""
        self._build(split)
        return self._splits[split]

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer if self._has_trainer() else None
        return (trainer.global_rank, trainer.world_size) if trainer else (0, 1)

    def _has_trainer(self) -> bool:
        try:
            return self.trainer is not None
        except RuntimeError:
            return False

    def _loader(self, ds: Dataset, sampler: Sampler, batch_size: int) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=Collate(self.tokenizer, self.cfg.data.max_text_len),
            persistent_workers=False,
            multiprocessing_context="fork" if workers and os.name == "posix" else None,
        )

    def train_dataloader(self) -> DataLoader | dict[str, DataLoader]:
        """Step-indexed loader of the whole run (``max_steps × accumulate`` batches); with QA
        co-training a dict ``{"main": ..., "qa": ...}`` of two such loaders."""
        self._build("train")
        if self._train is None:
            raise ValueError("data.train_file is not set")
        rank, world = self._rank_world()
        t = self.cfg.trainer
        batches = t.max_steps * t.accumulate_grad_batches
        bs = self.cfg.data.batch_size

        def loader(ds: Dataset, seed: int) -> DataLoader:
            sampler = StepSampler(len(ds), bs, batches, seed, rank, world, self.start_batch)
            return self._loader(ds, sampler, bs)

        main = loader(self._train, t.seed)
        self._build_aux_qa()
        if self._aux_qa is None:
            return main
        return {"main": main, "qa": loader(self._aux_qa, t.seed + 1)}

    def eval_loaders(self, split: str) -> list[DataLoader]:
        """Sharded loaders of ``split`` for this process."""
        rank, world = self._rank_world()
        datasets, _ = self.eval_split(split)
        bs = self.cfg.data.eval_batch_size
        return [self._loader(ds, EvalShardSampler(len(ds), rank, world), bs) for ds in datasets]

    def val_dataloader(self) -> list[DataLoader]:
        """Loaders of ``data.val_file``."""
        return self.eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        """Loaders of the split ``eval.split`` names."""
        return self.eval_loaders(self.cfg.eval.split)
