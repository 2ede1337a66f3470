"""PyTorch datasets for video-text retrieval / pretraining, video QA and multiple choice.

Datasets pair the records of :mod:`leanvl.data.annotations` with frames decoded by
:func:`leanvl.video.read_frames`: ``sample="rand"`` for training and ``"middle"`` for evaluation
(Frozen / Singularity ``get_frame_indices``, as in All-in-one and SViTT), and a ``transform``
(e.g. ``leanvl.video.transforms.build_transform``) applied to the uint8 ``(T, 3, H, W)`` clip.

Bad videos. Every dataset takes ``on_error``:

- ``"raise"``: the :class:`~leanvl.video.VideoDecodeError` propagates (evaluation: a missing
  test video must not silently change the metric).
- ``"skip"``: the item is replaced by another one, chosen deterministically from
  ``(seed, index, attempt)``, up to ``max_retries`` times; if all of them fail the last error
  is raised. Each sample carries a ``"skipped"`` list of ``{"path", "reason"}`` for the videos
  it had to skip. Counters kept on the dataset object do not survive DataLoader worker
  processes, so the skipped videos travel with the batch instead:
  :class:`VideoBatchCollator` concatenates them into ``batch["skipped"]`` and the training loop
  feeds each batch to a :class:`SkippedVideos` tally (``tally.count``, ``tally.paths``).

Randomness (``"rand"`` frames, a random caption) is drawn from ``torch``'s generator, so it
follows ``torch.manual_seed`` in the main process and the DataLoader's per-worker seeding.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from leanvl.data.records import EgoClipRecord, EgoMCQRecord, MCRecord, QARecord, RetrievalRecord
from leanvl.video.errors import VideoDecodeError

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
     ".3gp", ".ogv", ".ts"}
)  # fmt: skip
"""File extensions treated as video (an id without one gets the dataset's ``video_ext``)."""

EGO4D_CHUNK_SECONDS = 600.0
"""EgoClip stores each Ego4D video as 600 s chunks ``<video_uid>/<chunk>.mp4``."""

OnError = Literal["skip", "raise"]
FrameReader = Callable[..., tuple[torch.Tensor, list[int]]]


def resolve_video_path(video_root: str | Path, video: str, video_ext: str = ".mp4") -> Path:
    """``video_root / video``, adding ``video_ext`` when ``video`` has no video extension.

    Args:
        video_root: folder the annotation paths are relative to.
        video: the record's ``video`` (``"clips/a.mp4"``, or an id such as ``"video7010"``).
        video_ext: extension for ids (``".mp4"`` MSR-VTT, ``".avi"`` MSVD, ``".gif"`` TGIF).
    """
    path = Path(video_root) / video
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        path = path.with_name(path.name + video_ext)
    return path


def egoclip_window(
    record: EgoClipRecord, chunk_seconds: float = EGO4D_CHUNK_SECONDS
) -> tuple[str, float, float]:
    """Chunk file and window (seconds inside that chunk) of an EgoClip clip.

    The chunk is the one holding ``clip_start`` (negative starts count as 0). A clip that runs
    past the end of its chunk is cut at the chunk end (EgoVLP instead decodes both chunks);
    the frames then cover the part of the clip inside the first chunk.

    Returns:
        ``("<video_uid>/<chunk>.mp4", start, end)``.
    """
    start = max(record.clip_start, 0.0)
    chunk = int(start // chunk_seconds)
    offset = chunk * chunk_seconds
    end = min(max(record.clip_end, start) - offset, chunk_seconds)
    return f"{record.video_uid}/{chunk}.mp4", start - offset, end


class VideoClipDataset(Dataset):
    """Base class: decodes the clip(s) of a record, with the skip / raise policy.

    Subclasses define :meth:`sources` (which files and windows a record needs) and
    :meth:`make_sample` (the sample dict).

    Args:
        records: annotation records (from a reader of :mod:`leanvl.data.annotations`).
        video_root: folder the records' video paths are relative to.
        num_frames: frames per clip (T).
        sample: frame sampling, ``"rand"`` (train) or ``"middle"`` (eval); any mode
            :func:`leanvl.video.sample_frame_indices` accepts.
        transform: callable on the uint8 ``(T, 3, H, W)`` clip (``None``: keep uint8).
        on_error: ``"skip"`` (replace bad videos, see the module docstring) or ``"raise"``.
        max_retries: replacement attempts per item before giving up.
        seed: seed of the replacement choice.
        size: decode-time resize, passed to ``read_frames`` (``None``: native size).
        video_ext: extension added to video ids that have none.
        reader: frame reader with :func:`leanvl.video.read_frames`'s signature (tests inject a
            stand-in); ``None``: ``leanvl.video.read_frames``.
        backend: ``read_frames`` backend (``"pyav"`` or ``"decord"``; default reader only).
    """

    def __init__(
        self,
        records: Sequence[Any],
        video_root: str | Path,
        num_frames: int,
        sample: str = "middle",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        on_error: OnError = "skip",
        max_retries: int = 10,
        seed: int = 0,
        size: int | tuple[int, int] | None = None,
        video_ext: str = ".mp4",
        reader: FrameReader | None = None,
        backend: str = "pyav",
    ):
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if not records:
            raise ValueError("records is empty")
        self.records = list(records)
        self.video_root = Path(video_root)
        self.num_frames, self.sample, self.transform = num_frames, sample, transform
        self.on_error, self.max_retries, self.seed = on_error, max_retries, seed
        self.size, self.video_ext, self.backend = size, video_ext, backend
        self.reader = reader
        self.skipped: list[dict[str, str]] = []
        """Videos skipped by this process (complete only with ``num_workers=0``)."""

    def __len__(self) -> int:
        return len(self.records)

    def skip_report(self) -> SkippedVideos:
        """Tally of the videos this process skipped (use the batches' tally with workers)."""
        tally = SkippedVideos()
        tally.update(self.skipped)
        return tally

    def sources(self, record: Any) -> list[tuple[str, float | None, float | None]]:
        """``(relative_path, start_s, end_s)`` of each clip a record needs (one by default)."""
        return [(record.video, None, None)]

    def make_sample(self, record: Any, video: torch.Tensor) -> dict[str, Any]:
        """The sample dict of ``record`` with its decoded ``video``."""
        raise NotImplementedError

    def replacement_index(self, index: int, attempt: int, tried: set[int] = frozenset()) -> int:
        """Deterministic replacement for a bad item: a function of (seed, index, attempt).

        Items in ``tried`` (already failed in this call) are avoided while others remain.
        """
        rng = random.Random(f"{self.seed}:{index}:{attempt}")
        choice = rng.randrange(len(self.records))
        for _ in range(64):
            if choice not in tried or len(tried) >= len(self.records):
                break
            choice = rng.randrange(len(self.records))
        return choice

    def _read(self, relative: str, start: float | None, end: float | None) -> torch.Tensor:
        path = resolve_video_path(self.video_root, relative, self.video_ext)
        kwargs: dict[str, Any] = {"sample": self.sample, "size": self.size}
        if self.sample == "rand":
            kwargs["seed"] = int(torch.randint(2**31 - 1, (1,)).item())
        if start is not None or end is not None:
            kwargs.update(start=start, end=end)
        reader = self.reader
        if reader is None:
            from leanvl.video import read_frames as reader

            kwargs["backend"] = self.backend
        frames, _ = reader(path, self.num_frames, **kwargs)
        clip = frames.permute(0, 3, 1, 2).contiguous()  # (T, H, W, 3) -> (T, 3, H, W)
        return self.transform(clip) if self.transform is not None else clip

    def _load_record(self, record: Any) -> torch.Tensor:
        clips = [self._read(*source) for source in self.sources(record)]
        return clips[0] if len(clips) == 1 else torch.stack(clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped: list[dict[str, str]] = []
        tried: set[int] = set()
        for attempt in range(self.max_retries + 1):
            current = index if attempt == 0 else self.replacement_index(index, attempt, tried)
            tried.add(current)
            record = self.records[current]
            try:
                video = self._load_record(record)
            except VideoDecodeError as err:
                if self.on_error == "raise":
                    raise
                skipped.append({"path": err.path, "reason": err.reason})
                self.skipped.append(skipped[-1])
                logger.warning("skipping bad video %s (item %d)", err, current)
                continue
            sample = self.make_sample(record, video)
            sample["index"] = current
            sample["skipped"] = skipped
            return sample
        first = skipped[0]  # on_error="skip" and every attempt failed
        raise VideoDecodeError(
            first["path"],
            f"{first['reason']}; {self.max_retries} replacement items failed too "
            f"(item {index}; {len(skipped)} bad videos)",
        )


class VideoTextDataset(VideoClipDataset):
    """Video-caption pairs for retrieval and pretraining (records: :class:`RetrievalRecord`).

    Sample: ``{"video", "text", "video_id", "index", "skipped"}``.

    Args:
        records: retrieval records.
        *args: see :class:`VideoClipDataset`.
        caption: ``"random"`` (train: one of the record's captions, torch-seeded) or
            ``"first"`` (eval).
        text_transform: applied to the caption (e.g. :func:`leanvl.text.pre_text` for SViTT).
        **kwargs: see :class:`VideoClipDataset`.
    """

    def __init__(
        self,
        records: Sequence[RetrievalRecord],
        *args: Any,
        caption: Literal["random", "first"] = "random",
        text_transform: Callable[[str], str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(records, *args, **kwargs)
        if caption not in ("random", "first"):
            raise ValueError(f"caption must be 'random' or 'first', got {caption!r}")
        self.caption, self.text_transform = caption, text_transform

    def make_sample(self, record: RetrievalRecord, video: torch.Tensor) -> dict[str, Any]:
        """See :meth:`VideoClipDataset.make_sample`."""
        pick = 0
        if self.caption == "random" and len(record.captions) > 1:
            pick = int(torch.randint(len(record.captions), (1,)).item())
        text = record.captions[pick]
        if self.text_transform is not None:
            text = self.text_transform(text)
        return {"video": video, "text": text, "video_id": record.video}

    def all_captions(self) -> tuple[list[str], list[int]]:
        """Every caption of every record, for retrieval evaluation.

        Returns:
            ``(texts, video_index)``: the captions (after ``text_transform``) and, for each,
            the index of its record (video).
        """
        texts, owners = [], []
        for index, record in enumerate(self.records):
            for text in record.captions:
                texts.append(self.text_transform(text) if self.text_transform else text)
                owners.append(index)
        return texts, owners


class EgoClipDataset(VideoClipDataset):
    """EgoClip narration clips for SViTT-Ego / EgoNCE pretraining (records: EgoClipRecord).

    Frames are sampled inside ``[clip_start, clip_end]`` of the chunk file
    (:func:`egoclip_window`). Sample: ``{"video", "text", "tag_verb", "tag_noun",
    "video_uid", "index", "skipped"}``.
    """

    def __init__(
        self,
        records: Sequence[EgoClipRecord],
        *args: Any,
        chunk_seconds: float = EGO4D_CHUNK_SECONDS,
        text_transform: Callable[[str], str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(records, *args, **kwargs)
        self.chunk_seconds, self.text_transform = chunk_seconds, text_transform

    def sources(self, record: EgoClipRecord) -> list[tuple[str, float | None, float | None]]:
        """The chunk file and window of the clip."""
        return [egoclip_window(record, self.chunk_seconds)]

    def make_sample(self, record: EgoClipRecord, video: torch.Tensor) -> dict[str, Any]:
        """See :meth:`VideoClipDataset.make_sample`."""
        text = self.text_transform(record.clip_text) if self.text_transform else record.clip_text
        return {
            "video": video,
            "text": text,
            "tag_verb": record.tag_verb,
            "tag_noun": record.tag_noun,
            "video_uid": record.video_uid,
        }


class QAVideoDataset(VideoClipDataset):
    """Open-ended video QA as classification over an answer vocabulary (records: QARecord).

    The label is ``answer_vocab[record.answer]``. Answers outside the vocabulary get label
    ``-100`` (ignored by ``cross_entropy``; at evaluation they count as wrong, as in the
    official code where such questions can never be answered); their number is
    ``num_out_of_vocab`` and is logged. ``drop_out_of_vocab=True`` removes them instead (for
    training). Sample: ``{"video", "question", "answer", "label", "question_id", "type",
    "index", "skipped"}``.

    Args:
        records: QA records.
        answer_vocab: answer → label (:func:`leanvl.data.annotations.read_answer_vocab`);
            ``None``: every label is -100 (generative QA).
        *args: see :class:`VideoClipDataset`.
        drop_out_of_vocab: remove records whose answer is not in the vocabulary.
        text_transform: applied to the question.
        **kwargs: see :class:`VideoClipDataset`.
    """

    def __init__(
        self,
        records: Sequence[QARecord],
        answer_vocab: Mapping[str, int] | None,
        *args: Any,
        drop_out_of_vocab: bool = False,
        text_transform: Callable[[str], str] | None = None,
        **kwargs: Any,
    ):
        vocab = dict(answer_vocab) if answer_vocab is not None else None
        total = len(records)
        oov = [r for r in records if vocab is not None and r.answer not in vocab]
        if drop_out_of_vocab and oov:
            records = [r for r in records if r.answer in vocab]
        super().__init__(records, *args, **kwargs)
        self.answer_vocab, self.text_transform = vocab, text_transform
        self.num_out_of_vocab = 0 if drop_out_of_vocab else len(oov)
        self.num_dropped = len(oov) if drop_out_of_vocab else 0
        if oov:
            logger.warning(
                "%d of %d answers are not in the answer vocabulary (%s), e.g. %r",
                len(oov),
                total,
                "dropped" if drop_out_of_vocab else "label -100",
                oov[0].answer,
            )

    def label_of(self, answer: str) -> int:
        """Label index of ``answer``, or -100 when it is not in the vocabulary."""
        if self.answer_vocab is None:
            return -100
        return self.answer_vocab.get(answer, -100)

    def make_sample(self, record: QARecord, video: torch.Tensor) -> dict[str, Any]:
        """See :meth:`VideoClipDataset.make_sample`."""
        question = self.text_transform(record.question) if self.text_transform else record.question
        return {
            "video": video,
            "question": question,
            "answer": record.answer,
            "label": self.label_of(record.answer),
            "question_id": record.question_id,
            "type": record.type,
        }


class MCVideoDataset(VideoClipDataset):
    """Multiple choice: pick the option matching the video (records: :class:`MCRecord`).

    Sample: ``{"video", "options", "answer", "question", "type", "index", "skipped"}``.
    """

    def __init__(
        self,
        records: Sequence[MCRecord],
        *args: Any,
        text_transform: Callable[[str], str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(records, *args, **kwargs)
        self.text_transform = text_transform

    def make_sample(self, record: MCRecord, video: torch.Tensor) -> dict[str, Any]:
        """See :meth:`VideoClipDataset.make_sample`."""
        clean = self.text_transform or (lambda text: text)
        return {
            "video": video,
            "options": [clean(option) for option in record.options],
            "answer": record.answer,
            "question": clean(record.question) if record.question is not None else None,
            "type": record.type,
        }


class EgoMCQDataset(VideoClipDataset):
    """EgoMCQ: the query narration against 5 candidate clips (records: EgoMCQRecord).

    ``video`` is ``(5, T, 3, H, W)`` (the 5 choices); a bad choice video makes the whole
    question bad (skipped / raised as a unit). Sample: ``{"video", "text", "answer", "intra",
    "key", "index", "skipped"}``.
    """

    def __init__(
        self,
        records: Sequence[EgoMCQRecord],
        *args: Any,
        chunk_seconds: float = EGO4D_CHUNK_SECONDS,
        text_transform: Callable[[str], str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(records, *args, **kwargs)
        self.chunk_seconds, self.text_transform = chunk_seconds, text_transform

    def sources(self, record: EgoMCQRecord) -> list[tuple[str, float | None, float | None]]:
        """One chunk window per choice."""
        return [egoclip_window(choice, self.chunk_seconds) for choice in record.choices]

    def _load_record(self, record: EgoMCQRecord) -> torch.Tensor:
        return torch.stack([self._read(*source) for source in self.sources(record)])

    def make_sample(self, record: EgoMCQRecord, video: torch.Tensor) -> dict[str, Any]:
        """See :meth:`VideoClipDataset.make_sample`."""
        text = record.query.clip_text
        return {
            "video": video,
            "text": self.text_transform(text) if self.text_transform else text,
            "answer": record.answer,
            "intra": record.intra,
            "key": record.key,
        }


def multi_hot(tags: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """``(B, num_classes)`` float multi-hot vectors of class-id lists (EgoNCE verb / noun tags).

    Raises:
        ValueError: a class id outside ``[0, num_classes)``.
    """
    out = torch.zeros(len(tags), num_classes)
    for row, ids in enumerate(tags):
        for class_id in ids:
            if not 0 <= class_id < num_classes:
                raise ValueError(f"tag id {class_id} outside [0, {num_classes}) in row {row}")
            out[row, class_id] = 1.0
    return out


class VideoBatchCollator:
    """Collate samples of the datasets above into a batch; tokenizes the text fields.

    - ``video`` → stacked ``(B, T, 3, H, W)`` (``(B, 5, T, 3, H, W)`` for EgoMCQ).
    - ``text`` / ``question`` → ``<name>_ids`` and ``<name>_mask`` ``(B, L)``; ``options`` →
      ``options_ids`` / ``options_mask`` ``(B, K, L)``. Padding to ``max_length`` (or to the
      longest with ``padding="longest"``), truncation at ``max_length``. Raw strings are kept.
    - ``label``, ``answer`` (when integer: multiple choice) and ``index`` → int64 tensors;
      ``intra`` → bool tensor.
    - ``skipped`` → the concatenated list of ``{"path", "reason"}`` of the whole batch.
    - anything else → a list.

    A class instance (not a closure) so DataLoader worker processes can pickle it.

    Args:
        tokenizer: a Hugging Face tokenizer (:func:`leanvl.text.load_tokenizer`).
        max_length: token length (``None``: ``tokenizer.model_max_length``).
        padding: ``"max_length"`` (All-in-one, SViTT) or ``"longest"``.
    """

    TEXT_FIELDS = ("text", "question")
    TENSOR_FIELDS = ("label", "answer", "index")

    def __init__(self, tokenizer, max_length: int | None = None, padding: str = "max_length"):
        self.tokenizer = tokenizer
        self.max_length = max_length or tokenizer.model_max_length
        self.padding = padding

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.tokenizer(
            texts,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return encoded["input_ids"], encoded["attention_mask"]

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate ``samples`` (see the class docstring)."""
        batch: dict[str, Any] = {}
        for key in samples[0]:
            values = [sample[key] for sample in samples]
            if key == "video":
                batch[key] = torch.stack(values)
            elif key == "skipped":
                batch[key] = [item for value in values for item in value]
            elif key in self.TENSOR_FIELDS and all(type(v) is int for v in values):
                batch[key] = torch.tensor(values, dtype=torch.long)
            elif key == "intra":
                batch[key] = torch.tensor(values, dtype=torch.bool)
            elif key in self.TEXT_FIELDS and all(isinstance(v, str) for v in values):
                batch[key] = values
                batch[f"{key}_ids"], batch[f"{key}_mask"] = self._tokenize(values)
            elif key == "options":
                counts = {len(v) for v in values}
                if len(counts) != 1:
                    raise ValueError(f"options of different lengths in one batch: {counts}")
                flat = [option for value in values for option in value]
                ids, mask = self._tokenize(flat)
                batch[key] = values
                batch["options_ids"] = ids.view(len(values), -1, ids.shape[-1])
                batch["options_mask"] = mask.view(len(values), -1, mask.shape[-1])
            else:
                batch[key] = values
        return batch


class SkippedVideos:
    """Tally of the videos skipped by ``on_error="skip"``, fed from collated batches.

    Example:
        >>> tally = SkippedVideos()
        >>> for batch in loader:
        ...     tally.update(batch)
        >>> tally.count, tally.paths  # doctest: +SKIP
    """

    def __init__(self):
        self.paths: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}

    @property
    def count(self) -> int:
        """Number of skip events (a video skipped twice counts twice)."""
        return sum(self.paths.values())

    def update(self, batch_or_items: Mapping[str, Any] | Sequence[Mapping[str, str]]) -> int:
        """Add a batch's ``skipped`` list (or such a list); returns how many it held."""
        items = (
            batch_or_items.get("skipped", [])
            if isinstance(batch_or_items, Mapping)
            else batch_or_items
        )
        for item in items:
            self.paths[item["path"]] += 1
            self.reasons[item["path"]] = item["reason"]
            logger.debug("skipped bad video '%s': %s", item["path"], item["reason"])
        return len(items)

    def summary(self) -> str:
        """One line: how many skips, over how many distinct files."""
        return f"{self.count} skipped video reads over {len(self.paths)} distinct files"
