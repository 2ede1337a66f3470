"""Readers of the annotation files used by All-in-one, SViTT / SViTT-Ego and Video-Panda.

Every reader validates the whole file when called and returns a list of frozen records
(:mod:`leanvl.data.records`), so a bad record stops a run before training starts, with an
:class:`AnnotationError` naming the file, the line (line formats) or index / key (JSON
containers) and the field.

Formats here (the contract other modules code against):

- Singularity / SViTT JSON (Lei et al. 2022, "Revealing Single Frame Bias..."; Li et al. 2023,
  "SViTT: Temporal Learning of Sparse Video-Text Transformers"): retrieval
  ``{"video"|"image", "caption": str | [str, ...]}`` and QA
  ``{"video"|"image", "question", "answer": str | [str, ...], "question_id"?, "type"?}``.
- All-in-one's multiple choice JSON lines (Wang et al. 2023, "All in One: Exploring Unified
  Video-Language Pre-training"): ``{"clip_name", "options", "answer", "type"?}``.
- EgoClip / EgoMCQ (Lin et al. 2022, "Egocentric Video-Language Pretraining", used by SViTT-Ego).

The other official formats (MSR-VTT json / csv, MSRVTT-QA, MSVD-QA, TGIF-QA, WebVid, LLaVA
conversations) are read by :mod:`leanvl.data.benchmark_annotations` and re-exported here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from leanvl.data.annotation_io import (
    DuplicateCheck,
    Fields,
    iter_delimited,
    iter_jsonl,
    load_json,
    load_json_list,
    mc_record,
    media_path,
    parse_literal,
    read_text,
)
from leanvl.data.benchmark_annotations import (
    read_id_list,
    read_llava_json,
    read_msrvtt_csv,
    read_msrvtt_qa_jsonl,
    read_msrvtt_retrieval,
    read_msvd_qa_json,
    read_msvd_youtube_mapping,
    read_tgif_frameqa_jsonl,
    read_tgif_mc_jsonl,
    read_videollava_qa,
    read_webvid_csv,
)
from leanvl.data.records import (
    AnnotationError,
    ConversationRecord,
    ConversationTurn,
    EgoClipRecord,
    EgoMCQRecord,
    MCRecord,
    QARecord,
    RetrievalRecord,
)

EGOCLIP_COLUMNS = (
    "clip_idx",
    "video_uid",
    "video_dur",
    "narration_source",
    "narration_ind",
    "narration_time",
    "clip_start",
    "clip_end",
    "clip_text",
    "tag_verb",
    "tag_noun",
)
"""Columns of ``egoclip.csv`` (EgoVLP), all required by :func:`read_egoclip_csv`."""


def read_retrieval_json(path: str | Path) -> list[RetrievalRecord]:
    """Read a Singularity / SViTT retrieval or pretraining JSON list.

    Entries are ``{"video"|"image": str, "caption": str | [str, ...]}``. Training files list
    one entry per (video, caption) pair, so a video may repeat; evaluation files give each
    video once with one or many captions.

    Args:
        path: the JSON file.

    Returns:
        One record per entry, in file order.
    """
    records = []
    for index, entry in enumerate(load_json_list(path)):
        fields = Fields(path, f"index {index}", entry)
        video = media_path(fields)
        records.append(RetrievalRecord(video, fields.str_list("caption", allow_str=True)))
    return records


def _question_id(fields: Fields, name: str, ids: DuplicateCheck) -> str | None:
    if not fields.has(name):
        return None
    value = fields.id(name)
    ids.add(value, fields.where)
    return value


def read_qa_json(path: str | Path) -> list[QARecord]:
    """Read a Singularity / SViTT video-QA JSON list.

    Entries are ``{"video"|"image", "question": str, "answer": str | [str, ...],
    "question_id"?: str | int, "type"?: str}``. ``answer`` of the record is the first answer.

    Raises:
        AnnotationError: bad field, or a ``question_id`` that repeats.
    """
    ids = DuplicateCheck(path, "question_id")
    records = []
    for index, entry in enumerate(load_json_list(path)):
        fields = Fields(path, f"index {index}", entry)
        video = media_path(fields)
        answers = fields.str_list("answer", allow_str=True)
        records.append(
            QARecord(
                video=video,
                question=fields.text("question"),
                answer=answers[0],
                answers=answers,
                question_id=_question_id(fields, "question_id", ids),
                type=fields.opt_text("type"),
                kind=fields.opt_text("kind"),
            )
        )
    return records


def read_mc_jsonl(path: str | Path) -> list[MCRecord]:
    """Read All-in-one's MSR-VTT multiple-choice JSON lines (``msrvtt_mc_test.jsonl``).

    Each line is ``{"clip_name": str, "options": [str, ...], "answer": int, "type"?: str}``;
    ``video`` of the record is the ``clip_name`` (file ``<clip_name>.mp4``).
    """
    records = [
        mc_record(Fields(path, f"line {n}", obj), "clip_name") for n, obj in iter_jsonl(path)
    ]
    return records


def egoclip_record(fields: Fields, full: bool) -> EgoClipRecord:
    """An :class:`EgoClipRecord` from a CSV row (``full``: every column required) or JSON clip."""

    def optional(name: str, get):
        return get(name) if full or fields.has(name) else None

    start, end = fields.number("clip_start"), fields.number("clip_end")
    if end < start:
        raise fields.error("clip_end", f"clip_end {end} is before clip_start {start}")
    return EgoClipRecord(
        clip_idx=optional("clip_idx", fields.integer),
        video_uid=fields.text("video_uid", nonempty=True),
        video_dur=optional("video_dur", fields.number),
        narration_source=optional("narration_source", fields.text),
        narration_ind=optional("narration_ind", fields.integer),
        narration_time=optional("narration_time", fields.number),
        clip_start=start,
        clip_end=end,
        clip_text=fields.text("clip_text"),
        tag_verb=optional("tag_verb", fields.int_list_literal) or (),
        tag_noun=optional("tag_noun", fields.int_list_literal) or (),
    )


def read_egoclip_csv(path: str | Path) -> list[EgoClipRecord]:
    """Read EgoVLP's ``egoclip.csv`` (tab-separated with a header; see :data:`EGOCLIP_COLUMNS`).

    ``tag_verb`` / ``tag_noun`` are Python-list strings (``"[192, 115, 12]"``) parsed with
    :func:`ast.literal_eval`. Extra columns are ignored.

    Raises:
        AnnotationError: missing column, bad value, ``clip_end < clip_start`` or a repeated
            ``clip_idx`` (message names the line).
    """
    path = Path(path)
    first_line: dict[int, int] = {}
    records = []
    for number, row in iter_delimited(path, "\t", required=EGOCLIP_COLUMNS):
        record = _egoclip_row_fast(row)
        if record is None:  # the checked path raises the error naming line and field
            record = egoclip_record(Fields(path, f"line {number}", row, from_text=True), True)
        first = first_line.setdefault(record.clip_idx, number)
        if first != number:
            raise AnnotationError(
                path,
                f"line {number}",
                "clip_idx",
                f"duplicate id '{record.clip_idx}' (first at line {first})",
            )
        records.append(record)
    return records


def _is_int_tuple(value: object) -> bool:
    return isinstance(value, tuple) and all(type(item) is int for item in value)


def _egoclip_row_fast(row: dict[str, str]) -> EgoClipRecord | None:
    """The record of a well-formed EgoClip row, or ``None`` for anything unusual.

    Accepts a subset of what :func:`egoclip_record` accepts (same conversions, no error
    messages), so the result never differs; it reads EgoClip's 3.8 M rows several times faster.
    """
    try:
        clip_idx, narration_ind = int(row["clip_idx"]), int(row["narration_ind"])
        start, end = float(row["clip_start"]), float(row["clip_end"])
        duration, time = float(row["video_dur"]), float(row["narration_time"])
    except ValueError:
        return None
    verb, noun = parse_literal(row["tag_verb"].strip()), parse_literal(row["tag_noun"].strip())
    uid = row["video_uid"]
    numbers_ok = all(math.isfinite(x) for x in (start, end, duration, time))
    if not numbers_ok or end < start or not uid.strip():
        return None
    if not (_is_int_tuple(verb) and _is_int_tuple(noun)):
        return None
    return EgoClipRecord(
        clip_idx=clip_idx,
        video_uid=uid,
        video_dur=duration,
        narration_source=row["narration_source"],
        narration_ind=narration_ind,
        narration_time=time,
        clip_start=start,
        clip_end=end,
        clip_text=row["clip_text"],
        tag_verb=verb,
        tag_noun=noun,
    )


def read_egomcq_json(path: str | Path) -> list[EgoMCQRecord]:
    """Read EgoVLP's ``egomcq.json``: ``{"0": {"answer", "query", "choices", "types"}, ...}``.

    ``query`` and each of the 5 ``choices`` (keys ``"0"``..``"4"``) hold clip fields
    (``video_uid``, ``clip_start``, ``clip_end``, ``clip_text``; the other EgoClip fields are
    optional). ``intra`` is True when every choice shares the query's ``video_uid``; ``types``
    is kept verbatim but never trusted (EgoVLP's code labels it both ways).
    """
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, None, None, "expected a JSON object keyed by question id")
    if not data:
        raise AnnotationError(path, None, None, "no records (empty object)")
    records = []
    for key, entry in data.items():
        fields = Fields(path, f"key '{key}'", entry)
        query = egoclip_record(Fields(path, fields.where, fields.raw("query"), "query."), False)
        choices = _egomcq_choices(fields)
        answer = fields.integer("answer")
        if not 0 <= answer < len(choices):
            raise fields.error("answer", f"index {answer} out of range for {len(choices)} choices")
        types = fields.integer("types")
        intra = all(choice.video_uid == query.video_uid for choice in choices)
        records.append(EgoMCQRecord(key, query, choices, answer, types, intra))
    return records


def _egomcq_choices(fields: Fields) -> tuple[EgoClipRecord, ...]:
    raw: Any = fields.raw("choices")
    if isinstance(raw, list):  # tolerate a list; the official file uses "0".."4" keys
        raw = {str(i): choice for i, choice in enumerate(raw)}
    if not isinstance(raw, dict) or not raw:
        raise fields.error("choices", "expected a non-empty object keyed '0', '1', ...")
    keys = [str(i) for i in range(len(raw))]
    if sorted(raw, key=str) != sorted(keys):
        raise fields.error("choices", f"expected keys {keys}, got {sorted(raw)}")
    return tuple(
        egoclip_record(Fields(fields.path, fields.where, raw[k], f"choices.{k}."), False)
        for k in keys
    )


def read_answer_vocab(path: str | Path) -> dict[str, int]:
    """Read an answer vocabulary (answer text → label index).

    Accepted forms: a JSON list of answers (Singularity's answer list; label = position), a
    JSON object ``{answer: label}`` (All-in-one's ``*_ans2label.json``), or a text file with one
    answer per line (MSVD-QA's ``msvd_answer_set.txt``; label = line number - 1).

    Raises:
        AnnotationError: repeated answer, repeated or negative label, non-string answer.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        lines = read_text(path).split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return _vocab_from_items(
            path, ((f"line {i + 1}", a.rstrip("\r"), i) for i, a in enumerate(lines))
        )
    data = load_json(path)
    if isinstance(data, list):
        return _vocab_from_items(path, ((f"index {i}", a, i) for i, a in enumerate(data)))
    if isinstance(data, dict):
        items = []
        for answer, label in data.items():
            if isinstance(label, bool) or not isinstance(label, int) or label < 0:
                raise AnnotationError(
                    path, f"key {answer!r}", "label", f"expected an int >= 0, got {label!r}"
                )
            items.append((f"key {answer!r}", answer, label))
        return _vocab_from_items(path, items)
    raise AnnotationError(
        path, None, None, "expected a JSON list of answers or an answer→label object"
    )


def _vocab_from_items(path: Path, items) -> dict[str, int]:
    vocab: dict[str, int] = {}
    labels = DuplicateCheck(path, "label")
    answers = DuplicateCheck(path, "answer")
    for where, answer, label in items:
        if not isinstance(answer, str):
            raise AnnotationError(path, where, "answer", f"expected a string, got {answer!r}")
        answers.add(answer, where)
        labels.add(str(label), where)
        vocab[answer] = label
    if not vocab:
        raise AnnotationError(path, None, None, "no answers")
    return vocab


__all__ = [
    "EGOCLIP_COLUMNS",
    "AnnotationError",
    "ConversationRecord",
    "ConversationTurn",
    "EgoClipRecord",
    "EgoMCQRecord",
    "MCRecord",
    "QARecord",
    "RetrievalRecord",
    "read_answer_vocab",
    "read_egoclip_csv",
    "read_egomcq_json",
    "read_id_list",
    "read_llava_json",
    "read_mc_jsonl",
    "read_msrvtt_csv",
    "read_msrvtt_qa_jsonl",
    "read_msrvtt_retrieval",
    "read_msvd_qa_json",
    "read_msvd_youtube_mapping",
    "read_qa_json",
    "read_retrieval_json",
    "read_tgif_frameqa_jsonl",
    "read_tgif_mc_jsonl",
    "read_videollava_qa",
    "read_webvid_csv",
]
