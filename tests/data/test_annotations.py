"""Readers of the contract formats: valid files give typed records, bad ones a precise error."""

from __future__ import annotations

import json
import re

import pytest

from leanvl.data.annotations import (
    AnnotationError,
    EgoClipRecord,
    MCRecord,
    QARecord,
    RetrievalRecord,
    read_answer_vocab,
    read_egoclip_csv,
    read_egomcq_json,
    read_mc_jsonl,
    read_qa_json,
    read_retrieval_json,
)


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def expect_error(reader, path, *fragments, **kwargs):
    """Call reader and check the AnnotationError names the file and every fragment."""
    with pytest.raises(AnnotationError) as info:
        reader(path, **kwargs)
    message = str(info.value)
    assert f"'{path}'" in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return info.value


# --- Singularity / SViTT retrieval -----------------------------------------------------------


def test_retrieval_json_valid(tmp_path):
    path = write(
        tmp_path,
        "ret.json",
        [
            {"video": "clips/a.mp4", "caption": "a dog runs"},
            {"image": "img/b.jpg", "caption": ["one", "two"], "extra": 1},
        ],
    )
    assert read_retrieval_json(path) == [
        RetrievalRecord("clips/a.mp4", ("a dog runs",)),
        RetrievalRecord("img/b.jpg", ("one", "two")),
    ]


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"video": "a.mp4"}, "field 'caption'", "missing field"),
        ({"caption": "x"}, "field 'video'", "missing field"),
        ({"video": "a.mp4", "caption": 3}, "field 'caption'", "got int 3"),
        ({"video": 7, "caption": "x"}, "field 'video'", "expected a string, got int 7"),
        ({"video": "a.mp4", "caption": ["ok", 5]}, "field 'caption[1]'", "got int 5"),
        ({"video": "a.mp4", "caption": []}, "field 'caption'", "empty list"),
        ({"video": "", "caption": "x"}, "field 'video'", "empty string"),
        ({"video": "a.mp4", "image": "b.jpg", "caption": "x"}, "field 'video'", "both"),
        ("just a string", "index 1", "expected an object"),
    ],
)
def test_retrieval_json_bad_record(tmp_path, entry, field, message):
    path = write(tmp_path, "ret.json", [{"video": "ok.mp4", "caption": "fine"}, entry])
    expect_error(read_retrieval_json, path, "index 1", field, message)


def test_retrieval_json_non_utf8_names_line_and_column(tmp_path):
    path = write(tmp_path, "ret.json", b'[\n {"video": "a.mp4",\n  "caption": "caf\xe9"}]')
    err = expect_error(read_retrieval_json, path, "line 3, column 18", "not valid UTF-8", "0xe9")
    assert err.where == "line 3, column 18"


def test_retrieval_json_invalid_json_names_line_and_column(tmp_path):
    path = write(tmp_path, "ret.json", '[\n{"video": "a.mp4", "caption": "x"},\n{"video" "b"}]')
    expect_error(read_retrieval_json, path, "line 3, column 10", "invalid JSON")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("  \n", "empty file"),
        ("[]", "no records"),
        ("{}", "expected a JSON list"),
    ],
)
def test_retrieval_json_empty_or_wrong_top_level(tmp_path, content, message):
    expect_error(read_retrieval_json, write(tmp_path, "ret.json", content), message)


def test_missing_file_is_an_annotation_error(tmp_path):
    expect_error(read_retrieval_json, tmp_path / "nope.json", "file not found")


def test_duplicate_json_key_is_rejected(tmp_path):
    path = write(tmp_path, "ret.json", '[{"video": "a.mp4", "caption": "x", "caption": "y"}]')
    expect_error(read_retrieval_json, path, "field 'caption'", "duplicate key")


def test_error_is_a_picklable_value_error(tmp_path):
    import pickle

    err = AnnotationError("f.json", "index 2", "caption", "missing field")
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "'f.json', index 2, field 'caption': missing field"


# --- Singularity QA ----------------------------------------------------------------------------


def test_qa_json_valid(tmp_path):
    path = write(
        tmp_path,
        "qa.json",
        [
            {"video": "v1.mp4", "question": "what color?", "answer": "red", "question_id": 4},
            {
                "video": "v2.mp4",
                "question": "what moves?",
                "answer": ["ball", "sphere"],
                "question_id": "q5",
                "type": "temporal",
                "kind": "motion",
            },
            {"image": "i.jpg", "question": "who?", "answer": "man"},
        ],
    )
    records = read_qa_json(path)
    assert records[0] == QARecord("v1.mp4", "what color?", "red", ("red",), "4", None)
    assert records[1] == QARecord(
        "v2.mp4", "what moves?", "ball", ("ball", "sphere"), "q5", "temporal", "motion"
    )
    assert records[2].question_id is None and records[2].video == "i.jpg"


def test_qa_json_duplicate_question_id(tmp_path):
    entries = [
        {"video": f"v{i}.mp4", "question": "q", "answer": "a", "question_id": qid}
        for i, qid in enumerate([1, 2, 1])
    ]
    expect_error(
        read_qa_json,
        write(tmp_path, "qa.json", entries),
        "index 2",
        "field 'question_id'",
        "duplicate id '1' (first at index 0)",
    )


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"answer": 3}, "answer", "got int 3"),
        ({"question": None}, "question", "expected a string, got null"),
        ({"type": 1}, "type", "expected a string"),
        ({"question_id": 1.5}, "question_id", "expected a string or integer id"),
        ({"question_id": True}, "question_id", "expected a string or integer id"),
    ],
)
def test_qa_json_wrong_types(tmp_path, change, field, message):
    entry = {"video": "v.mp4", "question": "q?", "answer": "a", **change}
    path = write(tmp_path, "qa.json", [entry])
    expect_error(read_qa_json, path, "index 0", f"field '{field}'", message)


# --- All-in-one multiple choice -----------------------------------------------------------------


def test_mc_jsonl_valid_keeps_type(tmp_path):
    lines = [
        {"clip_name": "video7010", "options": ["a", "b", "c", "d", "e"], "answer": 2},
        {"clip_name": "video7011", "options": ["a", "b"], "answer": 0, "type": "static"},
    ]
    path = write(tmp_path, "mc.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    assert read_mc_jsonl(path) == [
        MCRecord("video7010", ("a", "b", "c", "d", "e"), 2),
        MCRecord("video7011", ("a", "b"), 0, "static"),
    ]


def test_mc_jsonl_errors_name_the_line(tmp_path):
    ok = json.dumps({"clip_name": "v", "options": ["a", "b"], "answer": 1})
    cases = [
        (
            '{"clip_name": "v", "options": ["a", "b"], "answer": 2}',
            "field 'answer'",
            "out of range",
        ),
        ('{"clip_name": "v", "options": "ab", "answer": 0}', "field 'options'", "list of strings"),
        (
            '{"clip_name": "v", "options": ["a"], "answer": "0"}',
            "field 'answer'",
            "expected an int",
        ),
        ('{"options": ["a"], "answer": 0}', "field 'clip_name'", "missing field"),
        ('{"clip_name": "v", "options": ["a"], "answer": 0', "line 3, column", "invalid JSON"),
    ]
    for bad, field, message in cases:
        # line 2 is blank: blank lines are skipped but still counted
        path = write(tmp_path, "mc.jsonl", f"{ok}\n\n{bad}\n")
        expect_error(read_mc_jsonl, path, "line 3", field, message)


def test_mc_jsonl_non_utf8(tmp_path):
    path = write(tmp_path, "mc.jsonl", b'{"clip_name": "v", "options": ["a"], "answer": 0}\n\xff\n')
    expect_error(read_mc_jsonl, path, "line 2, column 1", "not valid UTF-8")


# --- EgoClip ----------------------------------------------------------------------------------

EGO_HEADER = (
    "clip_idx\tvideo_uid\tvideo_dur\tnarration_source\tnarration_ind\tnarration_time\t"
    "clip_start\tclip_end\tclip_text\ttag_verb\ttag_noun"
)


def ego_row(idx=0, uid="uid-a", start="1.5", end="2.5", verb="[93]", noun="[192, 115, 12]"):
    cells = [idx, uid, "600.0", "narration_pass_1", idx, "2.0", start, end, "#C C cuts", verb, noun]
    return "\t".join(str(cell) for cell in cells)


def test_egoclip_csv_valid(tmp_path):
    path = write(tmp_path, "egoclip.csv", "\n".join([EGO_HEADER, ego_row(0), ego_row(1)]) + "\n")
    records = read_egoclip_csv(path)
    assert records[0] == EgoClipRecord(
        clip_idx=0,
        video_uid="uid-a",
        video_dur=600.0,
        narration_source="narration_pass_1",
        narration_ind=0,
        narration_time=2.0,
        clip_start=1.5,
        clip_end=2.5,
        clip_text="#C C cuts",
        tag_verb=(93,),
        tag_noun=(192, 115, 12),
    )
    assert records[1].clip_idx == 1


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (ego_row(verb="[93"), "tag_verb", "list literal"),
        (ego_row(verb="__import__('os').system('true')"), "tag_verb", "list literal"),
        (ego_row(noun="['knife']"), "tag_noun", "got item 'knife'"),
        (ego_row(noun="7"), "tag_noun", "expected a list of integers"),
        (ego_row(start="soon"), "clip_start", "expected a number, got 'soon'"),
        (ego_row(start="3.0", end="2.0"), "clip_end", "before clip_start"),
        (ego_row(idx="x"), "clip_idx", "expected an integer"),
        (ego_row(start="nan"), "clip_start", "finite"),
    ],
)
def test_egoclip_csv_bad_values(tmp_path, row, field, message):
    path = write(tmp_path, "egoclip.csv", "\n".join([EGO_HEADER, ego_row(5), row]) + "\n")
    expect_error(read_egoclip_csv, path, "line 3", f"field '{field}'", message)


def test_egoclip_csv_structure_errors(tmp_path):
    path = write(tmp_path, "egoclip.csv", "\n".join([EGO_HEADER, ego_row(0), ego_row(0)]))
    expect_error(
        read_egoclip_csv, path, "line 3", "field 'clip_idx'", "duplicate id '0' (first at line 2)"
    )
    header = EGO_HEADER.replace("\ttag_noun", "")
    path = write(tmp_path, "egoclip.csv", header + "\n" + ego_row(0))
    expect_error(read_egoclip_csv, path, "line 1", "field 'tag_noun'", "missing column")
    path = write(tmp_path, "egoclip.csv", EGO_HEADER + "\n" + ego_row(0) + "\textra")
    expect_error(read_egoclip_csv, path, "line 2", "expected 11 columns, got 12")
    path = write(tmp_path, "egoclip.csv", EGO_HEADER + "\n")
    expect_error(read_egoclip_csv, path, "header only")


# --- EgoMCQ -----------------------------------------------------------------------------------


def clip(uid, start=1.0, text="#C C opens the door", **extra):
    return {
        "video_uid": uid,
        "clip_start": start,
        "clip_end": start + 1.0,
        "clip_text": text,
        **extra,
    }


def mcq(query_uid, choice_uids, answer, types):
    return {
        "answer": answer,
        "query": clip(query_uid, tag_verb="[3]", tag_noun=[4, 5]),
        "choices": {str(i): clip(uid, start=float(i)) for i, uid in enumerate(choice_uids)},
        "types": types,
    }


def test_egomcq_intra_decided_from_data_not_types(tmp_path):
    # "types" is deliberately swapped: EgoVLP's dataset code reads 1 = inter, 2 = intra, its
    # metric code the other way round, so the reader must ignore it.
    data = {
        "0": mcq("u1", ["u1"] * 5, answer=3, types=1),  # all from the query's video: intra
        "1": mcq("u1", ["u1", "u2", "u3", "u4", "u5"], answer=0, types=2),  # inter
        "2": mcq("u9", ["u1"] * 5, answer=4, types=2),  # same video, but not the query's
    }
    records = read_egomcq_json(write(tmp_path, "egomcq.json", data))
    assert [(r.key, r.intra, r.types, r.answer) for r in records] == [
        ("0", True, 1, 3),
        ("1", False, 2, 0),
        ("2", False, 2, 4),
    ]
    first = records[0]
    assert first.query.tag_verb == (3,) and first.query.tag_noun == (4, 5)
    assert [c.clip_start for c in first.choices] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert first.choices[0].clip_idx is None and first.choices[0].tag_verb == ()


def test_egomcq_errors_name_key_and_nested_field(tmp_path):
    data = {"0": mcq("u1", ["u1"] * 5, 0, 1), "1": mcq("u1", ["u1"] * 5, 0, 1)}
    del data["1"]["choices"]["3"]["clip_end"]
    path = write(tmp_path, "egomcq.json", data)
    expect_error(read_egomcq_json, path, "key '1'", "field 'choices.3.clip_end'", "missing field")
    data["1"] = mcq("u1", ["u1"] * 5, 5, 1)
    path = write(tmp_path, "egomcq.json", data)
    expect_error(read_egomcq_json, path, "key '1'", "field 'answer'", "out of range for 5")
    data["1"] = mcq("u1", ["u1"] * 5, 0, 1)
    data["1"]["query"]["video_uid"] = 12
    path = write(tmp_path, "egomcq.json", data)
    expect_error(read_egomcq_json, path, "key '1'", "field 'query.video_uid'", "expected a string")
    expect_error(read_egomcq_json, write(tmp_path, "e.json", []), "keyed by question id")


# --- answer vocabularies ----------------------------------------------------------------------


def test_answer_vocab_forms(tmp_path):
    assert read_answer_vocab(write(tmp_path, "ans.json", ["red", "blue"])) == {"red": 0, "blue": 1}
    assert read_answer_vocab(write(tmp_path, "a2l.json", {"yes": 1, "no": 0})) == {
        "yes": 1,
        "no": 0,
    }
    assert read_answer_vocab(write(tmp_path, "set.txt", "man\nwoman\n")) == {"man": 0, "woman": 1}


def test_answer_vocab_duplicates(tmp_path):
    expect_error(
        read_answer_vocab,
        write(tmp_path, "ans.json", ["red", "blue", "red"]),
        "index 2",
        "field 'answer'",
        "duplicate id 'red' (first at index 0)",
    )
    expect_error(
        read_answer_vocab,
        write(tmp_path, "a2l.json", {"yes": 0, "no": 0}),
        "field 'label'",
        "duplicate",
    )
    expect_error(read_answer_vocab, write(tmp_path, "set.txt", "a\nb\na\n"), "line 3", "duplicate")


def test_message_format_is_stable(tmp_path):
    path = write(tmp_path, "ret.json", [{"video": "a.mp4"}])
    with pytest.raises(AnnotationError) as info:
        read_retrieval_json(path)
    assert re.fullmatch(r"'.*ret\.json', index 0, field 'caption': missing field", str(info.value))
    assert (info.value.where, info.value.field) == ("index 0", "caption")
