"""Readers of benchmark-specific annotation files (MSR-VTT, MSVD-QA, TGIF-QA, WebVid, LLaVA).

The file layouts are those All-in-one (Wang et al. 2023, "All in One: Exploring Unified
Video-Language Pre-training") reads from its ``meta_data/`` folders, the public WebVid-2M/10M
csv (Bain et al. 2021, "Frozen in Time"), and the LLaVA / Video-LLaVA conversation JSON that
Video-Panda (Yi et al. 2024, "Video-Panda: Parameter-efficient Alignment for Encoder-free
Video-Language Models") trains and evaluates on. All readers validate the whole file and raise
:class:`~leanvl.data.records.AnnotationError` naming file, line / index and field. Import them
from :mod:`leanvl.data.annotations`.

Record ``video`` values are paths or ids relative to the dataset's video folder; ids without
an extension get one from the dataset (``video_ext``), e.g. MSR-VTT ``video7010`` →
``videos/all/video7010.mp4``.
"""

from __future__ import annotations

from pathlib import Path

from leanvl.data.annotation_io import (
    DuplicateCheck,
    Fields,
    iter_delimited,
    iter_jsonl,
    load_json,
    load_json_list,
    mc_record,
    parse_json,
    read_text,
)
from leanvl.data.records import (
    AnnotationError,
    ConversationRecord,
    ConversationTurn,
    MCRecord,
    QARecord,
    RetrievalRecord,
)


def read_id_list(path: str | Path) -> list[str]:
    """Read a split list (one video id per line, e.g. MSR-VTT ``train_list_jsfusion.txt``).

    Raises:
        AnnotationError: a repeated id (names both lines) or a line with spaces inside.
    """
    ids = DuplicateCheck(path, "video_id")
    out = []
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        value = line.strip()
        if not value:
            continue
        if len(value.split()) != 1:
            raise AnnotationError(
                path, f"line {number}", "video_id", f"expected one id, got {value!r}"
            )
        ids.add(value, f"line {number}")
        out.append(value)
    return out


def read_msrvtt_retrieval(
    json_path: str | Path, split_list: str | Path | None = None
) -> list[RetrievalRecord]:
    """Read MSR-VTT ``MSR_VTT.json`` (``annotations[{image_id, caption}]``) as one record a video.

    Args:
        json_path: ``MSR_VTT.json``; captions are grouped by ``image_id`` in file order (20 per
            video in the official file). A caption ``id``, when present, must be unique.
        split_list: optional id list (``train_list_jsfusion.txt``...); then only those videos,
            in the list's order, each of which must have captions.

    Returns:
        Records with ``video`` = the id (``video7010``; file ``<id>.mp4``).
    """
    data = load_json(json_path)
    if not isinstance(data, dict):
        raise AnnotationError(json_path, None, None, "expected a JSON object with 'annotations'")
    annotations = Fields(json_path, "top level", data).raw("annotations")
    if not isinstance(annotations, list) or not annotations:
        raise AnnotationError(json_path, None, "annotations", "expected a non-empty list")
    captions: dict[str, list[str]] = {}
    ids = DuplicateCheck(json_path, "annotations.id")
    for index, entry in enumerate(annotations):
        fields = Fields(json_path, f"annotations index {index}", entry)
        if fields.has("id"):
            ids.add(fields.id("id"), fields.where)
        video = fields.id("image_id")
        captions.setdefault(video, []).append(fields.text("caption"))
    if split_list is None:
        return [RetrievalRecord(video, tuple(caps)) for video, caps in captions.items()]
    records = []
    for video in read_id_list(split_list):
        if video not in captions:
            raise AnnotationError(
                split_list, None, "video_id", f"{video!r} has no caption in '{json_path}'"
            )
        records.append(RetrievalRecord(video, tuple(captions[video])))
    return records


def read_msrvtt_csv(path: str | Path) -> list[RetrievalRecord]:
    """Read an MSR-VTT retrieval csv (``MSRVTT_JSFUSION_test.csv``: ``video_id``, ``sentence``).

    This is the 1k-A test layout of CLIP4Clip-style code (comma, header ``key, vid_key,
    video_id, sentence``); rows of the same ``video_id`` are grouped into one record, in file
    order.
    """
    captions: dict[str, list[str]] = {}
    for number, row in iter_delimited(path, ",", required=("video_id", "sentence")):
        fields = Fields(path, f"line {number}", row, from_text=True)
        video = fields.text("video_id", nonempty=True).strip()
        captions.setdefault(video, []).append(fields.text("sentence"))
    return [RetrievalRecord(video, tuple(caps)) for video, caps in captions.items()]


def _qa_from_jsonl(path: str | Path, video_field: str, id_field: str | None) -> list[QARecord]:
    ids = DuplicateCheck(path, id_field or "id")
    records = []
    for number, obj in iter_jsonl(path):
        fields = Fields(path, f"line {number}", obj)
        question_id = None
        if id_field and fields.has(id_field):
            question_id = fields.id(id_field)
            ids.add(question_id, fields.where)
        answer = fields.text("answer")
        records.append(
            QARecord(
                video=fields.id(video_field),
                question=fields.text("question"),
                answer=answer,
                answers=(answer,),
                question_id=question_id,
                type=fields.opt_text("type"),
            )
        )
    return records


def read_msrvtt_qa_jsonl(path: str | Path) -> list[QARecord]:
    """Read All-in-one's ``msrvtt_qa_{train,val,test}.jsonl`` (``question, answer, video_id``).

    The optional ``id`` becomes ``question_id`` (must be unique). Answer labels come from
    ``msrvtt_train_ans2label.json`` via :func:`leanvl.data.annotations.read_answer_vocab`.
    """
    return _qa_from_jsonl(path, "video_id", "id")


def read_msvd_youtube_mapping(path: str | Path) -> dict[str, str]:
    """Read MSVD ``msvd_youtube_mapping.txt`` (``<youtube_clip> vid<N>``) → ``{"vidN": clip}``."""
    mapping: dict[str, str] = {}
    ids = DuplicateCheck(path, "vid")
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("vid"):
            raise AnnotationError(
                path, f"line {number}", None, f"expected '<youtube_clip> vid<N>', got {line!r}"
            )
        ids.add(parts[1], f"line {number}")
        mapping[parts[1]] = parts[0]
    return mapping


def read_msvd_qa_json(
    path: str | Path, youtube_mapping: dict[str, str] | None = None
) -> list[QARecord]:
    """Read MSVD-QA ``msvd_{train,val,test}_qa_encode.json``.

    The official files hold one JSON array of ``{video_id: int, question, answer, id?}`` on a
    single line (All-in-one reads them with ``read_json(lines=True)``); JSON lines are accepted
    too.

    Args:
        path: the QA file.
        youtube_mapping: ``{"vidN": youtube_clip}`` from :func:`read_msvd_youtube_mapping`; with
            it ``video`` is the YouTube clip name (file ``YouTubeClips/<clip>.avi``), without it
            ``vid<N>``.
    """
    text = read_text(path)
    if text.lstrip().startswith("["):
        data = parse_json(path, text)
        if not isinstance(data, list) or not data:
            raise AnnotationError(path, None, None, "expected a non-empty JSON list")
        entries = [(f"index {i}", obj) for i, obj in enumerate(data)]
    else:
        entries = [(f"line {n}", obj) for n, obj in iter_jsonl(path)]
    ids = DuplicateCheck(path, "id")
    records = []
    for where, obj in entries:
        fields = Fields(path, where, obj)
        vid = fields.id("video_id")
        vid = vid if vid.startswith("vid") else f"vid{vid}"
        if youtube_mapping is not None:
            if vid not in youtube_mapping:
                raise fields.error("video_id", f"{vid!r} is not in the YouTube mapping")
            vid = youtube_mapping[vid]
        question_id = fields.id("id") if fields.has("id") else None
        if question_id is not None:
            ids.add(question_id, where)
        answer = fields.text("answer")
        records.append(QARecord(vid, fields.text("question"), answer, (answer,), question_id, None))
    return records


def read_tgif_frameqa_jsonl(path: str | Path) -> list[QARecord]:
    """Read TGIF-QA ``frameqa_{train,test}.jsonl`` (``gif_name, question, answer``).

    ``video`` is the ``gif_name`` (file ``gifs/<gif_name>.gif``).
    """
    return _qa_from_jsonl(path, "gif_name", None)


def read_tgif_mc_jsonl(path: str | Path) -> list[MCRecord]:
    """Read TGIF-QA action / transition ``{action,transition}_{train,test}.jsonl``.

    Lines are ``{"gif_name", "question", "options": [5 str], "answer": int}``; the original
    TGIF-QA columns ``a1``..``a5`` are accepted in place of ``options``.
    """
    records = []
    for number, obj in iter_jsonl(path):
        if isinstance(obj, dict) and "options" not in obj and "a1" in obj:
            obj = {**obj, "options": [obj.get(f"a{i}") for i in range(1, 6)]}
        records.append(mc_record(Fields(path, f"line {number}", obj), "gif_name", question=True))
    return records


def read_webvid_csv(path: str | Path) -> list[RetrievalRecord]:
    """Read a WebVid annotation file, in either of its two layouts.

    - All-in-one's ``webvid_{training,validation}_success_full.tsv`` (tab, header): column 0 =
      caption, column 1 = relative id → ``video`` = ``<id>.mp4`` (under ``webvid/<split>/``).
    - The public WebVid csv (comma, header ``videoid,contentUrl,duration,page_dir,name``):
      caption = ``name`` → ``video`` = ``<page_dir>/<videoid>.mp4`` (Frozen-in-Time layout;
      ``<videoid>.mp4`` when there is no ``page_dir`` column).

    The layout is chosen from the header: ``videoid`` and ``name`` columns mean the public csv.

    Raises:
        AnnotationError: missing column, empty caption or id, repeated video.
    """
    first = read_text(path).split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    public = {"videoid", "name"} <= {c.strip() for c in first.split(delimiter)}
    videos = DuplicateCheck(path, "videoid" if public else "column 1")
    records = []
    if public:
        for number, row in iter_delimited(path, delimiter, required=("videoid", "name")):
            fields = Fields(path, f"line {number}", row, from_text=True)
            video_id = fields.text("videoid", nonempty=True).strip()
            page_dir = row.get("page_dir", "").strip()
            video = f"{page_dir}/{video_id}.mp4" if page_dir else f"{video_id}.mp4"
            videos.add(video, fields.where)
            records.append(RetrievalRecord(video, (fields.text("name"),)))
        return records
    for number, row in iter_delimited(path, delimiter, header=False):
        if number == 1:
            continue  # header line
        if len(row) < 2:
            raise AnnotationError(path, f"line {number}", "column 1", "missing video id column")
        caption, video_id = row[0], row[1].strip()
        if not video_id:
            raise AnnotationError(path, f"line {number}", "column 1", "empty video id")
        video = video_id if Path(video_id).suffix else f"{video_id}.mp4"
        videos.add(video, f"line {number}")
        records.append(RetrievalRecord(video, (caption,)))
    if not records:
        raise AnnotationError(path, None, None, "no records (header only)")
    return records


def read_llava_json(path: str | Path) -> list[ConversationRecord]:
    """Read LLaVA / Video-LLaVA training JSON (Video-Panda stage data).

    Entries are ``{"id"?, "video"? | "image"?, "conversations": [{"from", "value"}, ...]}``
    with ``from`` in ``{"human", "gpt"}``. Ids are kept but may repeat (Video-LLaVA's files
    reuse the media name for several samples), so they are not checked for uniqueness.
    """
    records = []
    for index, entry in enumerate(load_json_list(path)):
        fields = Fields(path, f"index {index}", entry)
        turns_raw = fields.raw("conversations")
        if not isinstance(turns_raw, list) or not turns_raw:
            raise fields.error("conversations", "expected a non-empty list of turns")
        turns = []
        for t, turn in enumerate(turns_raw):
            turn_fields = Fields(path, fields.where, turn, f"conversations[{t}].")
            speaker = turn_fields.text("from")
            if speaker not in ("human", "gpt"):
                raise turn_fields.error("from", f"expected 'human' or 'gpt', got {speaker!r}")
            turns.append(ConversationTurn(speaker, turn_fields.text("value")))
        video = fields.text("video", nonempty=True) if fields.has("video") else None
        image = fields.text("image", nonempty=True) if fields.has("image") else None
        record_id = fields.id("id") if fields.has("id") else None
        records.append(ConversationRecord(video, image, tuple(turns), record_id))
    return records


def read_videollava_qa(questions: str | Path, answers: str | Path) -> list[QARecord]:
    """Read Video-LLaVA's zero-shot QA pair ``test_q.json`` + ``test_a.json``.

    ``test_q.json`` = ``[{video_name, question, question_id}]``, ``test_a.json`` =
    ``[{answer, type, question_id}]``, paired by list index as the official scripts do; the two
    ``question_id`` at the same index must agree (a mismatch means the files are misaligned).
    """
    q_list, a_list = load_json_list(questions), load_json_list(answers)
    if len(q_list) != len(a_list):
        raise AnnotationError(
            answers,
            None,
            None,
            f"{len(a_list)} answers for {len(q_list)} questions in '{questions}'",
        )
    ids = DuplicateCheck(questions, "question_id")
    records = []
    for index, (q_obj, a_obj) in enumerate(zip(q_list, a_list, strict=True)):
        q = Fields(questions, f"index {index}", q_obj)
        a = Fields(answers, f"index {index}", a_obj)
        question_id = q.id("question_id")
        if a.id("question_id") != question_id:
            raise a.error("question_id", f"{a.id('question_id')!r} != question's {question_id!r}")
        ids.add(question_id, q.where)
        answer = a.text("answer")
        video = q.text("video_name", nonempty=True)
        records.append(
            QARecord(video, q.text("question"), answer, (answer,), question_id, a.opt_text("type"))
        )
    return records


__all__ = [
    "read_id_list",
    "read_llava_json",
    "read_msrvtt_csv",
    "read_msrvtt_qa_jsonl",
    "read_msrvtt_retrieval",
    "read_msvd_qa_json",
    "read_msvd_youtube_mapping",
    "read_tgif_frameqa_jsonl",
    "read_tgif_mc_jsonl",
    "read_videollava_qa",
    "read_webvid_csv",
]
