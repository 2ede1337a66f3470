"""Typed records of the annotation files that video-language datasets ship, and their error type.

Each record is a frozen dataclass whose field names follow the official files (Singularity /
SViTT JSON, All-in-one's MSR-VTT / MSVD / TGIF / WebVid files, EgoVLP's EgoClip and EgoMCQ,
LLaVA / Video-LLaVA conversations), so a record reads like the line it came from. The readers
live in :mod:`leanvl.data.annotations` and :mod:`leanvl.data.benchmark_annotations`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class AnnotationError(ValueError):
    """A bad annotation file or record, raised at read time (before any training starts).

    ``str(err)`` names the file, where in it (``line 7``, ``line 3, column 18``, ``index 4``,
    ``key '12'``) and the field, e.g. ``"'ann/train.json', index 4, field 'caption': expected a
    string, got int 3"``.

    Attributes:
        file: path of the annotation file.
        where: position in the file (``None`` for whole-file problems such as an empty file).
        field: the offending field (``None`` when the record as a whole is bad).
        message: what is wrong.
    """

    def __init__(self, file: str | Path, where: str | None, field: str | None, message: str):
        self.file = str(file)
        self.where = where
        self.field = field
        self.message = message
        parts = [f"'{self.file}'"]
        if where:
            parts.append(where)
        if field:
            parts.append(f"field '{field}'")
        super().__init__(f"{', '.join(parts)}: {message}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.file, self.where, self.field, self.message))


@dataclass(frozen=True, slots=True)
class RetrievalRecord:
    """One video with its captions (retrieval, pretraining).

    Attributes:
        video: video path relative to the dataset's video root (Singularity's ``"video"`` or
            ``"image"`` key; MSR-VTT's ``image_id``; WebVid's id).
        captions: one or more captions, in file order.
    """

    video: str
    captions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QARecord:
    """One open-ended question about a video.

    Attributes:
        video: video path (or id) relative to the video root.
        question: the question text.
        answer: the first (main) answer, ``answers[0]``.
        answers: every answer the file lists (Singularity allows a list).
        question_id: the file's question id as a string, when it has one.
        type: the question type when the file tags it (``"static"`` / ``"temporal"`` in the
            synthetic benchmark, ``"what"``, ``"who"``... in Video-LLaVA's QA files).
        kind: a finer question category when the file tags it (``"direction"``, ``"count"``...
            in the synthetic benchmark); evaluation reports accuracy per kind beside per type.
    """

    video: str
    question: str
    answer: str
    answers: tuple[str, ...]
    question_id: str | None = None
    type: str | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class MCRecord:
    """One multiple-choice item: pick the option that matches the video.

    Attributes:
        video: video path (or id) relative to the video root (``clip_name`` / ``gif_name``).
        options: the candidate texts (5 for MSR-VTT-MC and TGIF action/transition).
        answer: 0-based index of the correct option.
        type: optional question type tag.
        question: the question text (TGIF action/transition); ``None`` for caption choice.
    """

    video: str
    options: tuple[str, ...]
    answer: int
    type: str | None = None
    question: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EgoClipRecord:
    """One EgoClip narration clip (a row of ``egoclip.csv``; also an EgoMCQ query or choice).

    Times are seconds from the start of the whole Ego4D video; the video itself is stored in
    600 s chunks ``<video_uid>/<chunk>.mp4`` (see :func:`leanvl.data.datasets.egoclip_window`).
    Fields that EgoMCQ entries may leave out default to ``None`` / ``()``; the EgoClip reader
    requires every column.

    Attributes:
        clip_idx: row id of the clip in EgoClip.
        video_uid: Ego4D video id.
        video_dur: duration of the whole video (s).
        narration_source: ``narration_pass_1`` / ``narration_pass_2``.
        narration_ind: index of the narration in its pass.
        narration_time: time stamp of the narration (s).
        clip_start: clip window start (s).
        clip_end: clip window end (s).
        clip_text: the narration (``"#C C picks up a knife"``).
        tag_verb: Ego4D verb class ids of the narration (EgoNCE positives).
        tag_noun: Ego4D noun class ids of the narration.
    """

    clip_idx: int | None = None
    video_uid: str
    video_dur: float | None = None
    narration_source: str | None = None
    narration_ind: int | None = None
    narration_time: float | None = None
    clip_start: float
    clip_end: float
    clip_text: str
    tag_verb: tuple[int, ...] = ()
    tag_noun: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EgoMCQRecord:
    """One EgoMCQ question: which of the 5 clips matches the query narration?

    Attributes:
        key: the question's key in ``egomcq.json`` (``"0"``, ``"1"``...).
        query: the query clip (its ``clip_text`` is the text to match).
        choices: the 5 candidate clips, in key order ``"0"``..``"4"``.
        answer: index of the correct choice.
        types: the file's type id, kept verbatim. EgoVLP's dataset code reads 1 = inter and
            2 = intra while its metric code labels them the other way round, so do not use it.
        intra: True when all 5 choices come from the query's video (``video_uid``), i.e. the
            harder intra-video setting; decided from the data, never from ``types``.
    """

    key: str
    query: EgoClipRecord
    choices: tuple[EgoClipRecord, ...]
    answer: int
    types: int
    intra: bool


@dataclass(frozen=True, slots=True)
class ConversationTurn:
    """One turn of a LLaVA / Video-LLaVA conversation.

    Attributes:
        from_: the JSON ``"from"`` field (``"human"`` or ``"gpt"``; ``from`` is a Python keyword).
        value: the text; the first human turn carries the ``<video>`` / ``<image>`` placeholder.
    """

    from_: str
    value: str


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """One LLaVA / Video-LLaVA training sample.

    Attributes:
        video: media path relative to the video root (``None`` for image or text-only samples).
        image: image path (``None`` unless the sample takes LLaVA's image branch).
        conversations: the turns, in order.
        id: the sample's ``"id"`` when present (it names the media and may repeat).
    """

    video: str | None
    image: str | None
    conversations: tuple[ConversationTurn, ...]
    id: str | None = None
