"""Readers of the benchmark-specific formats (MSR-VTT, MSVD-QA, TGIF-QA, WebVid, LLaVA)."""

from __future__ import annotations

import json

import pytest

from leanvl.data.annotations import (
    AnnotationError,
    ConversationTurn,
    MCRecord,
    QARecord,
    RetrievalRecord,
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


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        text = content if isinstance(content, str) else json.dumps(content)
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(items):
    return "\n".join(json.dumps(item) for item in items) + "\n"


def raises(call, *fragments):
    with pytest.raises(AnnotationError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_msrvtt_retrieval_groups_captions_and_follows_split(tmp_path):
    data = {
        "annotations": [
            {"image_id": "video1", "caption": "a", "id": 0},
            {"image_id": "video2", "caption": "b", "id": 1},
            {"image_id": "video1", "caption": "c", "id": 2},
        ],
        "videos": [],
    }
    path = write(tmp_path, "MSR_VTT.json", data)
    assert read_msrvtt_retrieval(path) == [
        RetrievalRecord("video1", ("a", "c")),
        RetrievalRecord("video2", ("b",)),
    ]
    split = write(tmp_path, "val_list.txt", "video2\nvideo1\n")
    assert [r.video for r in read_msrvtt_retrieval(path, split)] == ["video2", "video1"]
    raises(
        lambda: read_msrvtt_retrieval(path, write(tmp_path, "s.txt", "video3\n")),
        "'video3' has no caption",
    )
    data["annotations"][2]["id"] = 1
    raises(
        lambda: read_msrvtt_retrieval(write(tmp_path, "MSR_VTT.json", data)),
        "annotations index 2",
        "field 'annotations.id'",
        "duplicate id '1'",
    )


def test_msrvtt_csv(tmp_path):
    path = write(
        tmp_path,
        "MSRVTT_JSFUSION_test.csv",
        "key,vid_key,video_id,sentence\n"
        'ret0,msr7579,video7579,"a girl, smiling"\nret1,msr7725,video7725,a man talks\n',
    )
    assert read_msrvtt_csv(path) == [
        RetrievalRecord("video7579", ("a girl, smiling",)),
        RetrievalRecord("video7725", ("a man talks",)),
    ]
    bad = write(tmp_path, "m.csv", "key,video_id\nret0,video1\n")
    raises(lambda: read_msrvtt_csv(bad), "line 1", "field 'sentence'", "missing column")


def test_id_list_rejects_duplicates(tmp_path):
    assert read_id_list(write(tmp_path, "l.txt", "a\n\nb\n")) == ["a", "b"]
    raises(lambda: read_id_list(write(tmp_path, "l.txt", "a\nb\na\n")), "line 3", "duplicate")


def test_msrvtt_qa_jsonl(tmp_path):
    path = write(
        tmp_path,
        "msrvtt_qa_test.jsonl",
        jsonl(
            [
                {
                    "question": "what is he doing?",
                    "answer": "cook",
                    "video_id": "video7010",
                    "id": 3,
                },
                {"question": "who sings?", "answer": "woman", "video_id": "video7011"},
            ]
        ),
    )
    assert read_msrvtt_qa_jsonl(path) == [
        QARecord("video7010", "what is he doing?", "cook", ("cook",), "3"),
        QARecord("video7011", "who sings?", "woman", ("woman",), None),
    ]
    bad = write(tmp_path, "q.jsonl", jsonl([{"question": "q", "answer": ["x"], "video_id": "v"}]))
    raises(lambda: read_msrvtt_qa_jsonl(bad), "line 1", "field 'answer'", "expected a string")


def test_msvd_qa_single_line_array_and_mapping(tmp_path):
    items = [
        {"video_id": 1, "question": "what is cut?", "answer": "onion", "id": 0},
        {"video_id": 2, "question": "who runs?", "answer": "dog", "id": 1},
    ]
    path = write(tmp_path, "msvd_test_qa_encode.json", json.dumps(items))  # one line
    assert [r.video for r in read_msvd_qa_json(path)] == ["vid1", "vid2"]
    mapping = read_msvd_youtube_mapping(
        write(tmp_path, "map.txt", "-4wsuPCjDBc_5_15 vid1\n_0nX-El-ySo_83_93 vid2\n")
    )
    records = read_msvd_qa_json(path, mapping)
    assert records[1] == QARecord("_0nX-El-ySo_83_93", "who runs?", "dog", ("dog",), "1")
    raises(lambda: read_msvd_qa_json(path, {"vid1": "x"}), "index 1", "not in the YouTube mapping")
    raises(lambda: read_msvd_youtube_mapping(write(tmp_path, "m.txt", "a vid1\nb\n")), "line 2")


def test_tgif_frameqa_and_multiple_choice(tmp_path):
    frameqa = write(
        tmp_path,
        "frameqa_test.jsonl",
        jsonl([{"gif_name": "tumblr_a", "question": "what is the color?", "answer": "red"}]),
    )
    assert read_tgif_frameqa_jsonl(frameqa)[0] == QARecord(
        "tumblr_a", "what is the color?", "red", ("red",)
    )
    options = ["nod", "wave", "jump", "spin", "sit"]
    mc = write(
        tmp_path,
        "action_test.jsonl",
        jsonl(
            [
                {
                    "gif_name": "g1",
                    "question": "what does he do 3 times?",
                    "options": options,
                    "answer": 1,
                },
                {
                    "gif_name": "g2",
                    "question": "q",
                    **{f"a{i + 1}": o for i, o in enumerate(options)},
                    "answer": 4,
                },
            ]
        ),
    )
    assert read_tgif_mc_jsonl(mc) == [
        MCRecord("g1", tuple(options), 1, None, "what does he do 3 times?"),
        MCRecord("g2", tuple(options), 4, None, "q"),
    ]
    no_question = write(
        tmp_path,
        "transition_test.jsonl",
        jsonl([{"gif_name": "g", "options": options, "answer": 0}]),
    )
    raises(lambda: read_tgif_mc_jsonl(no_question), "line 1", "field 'question'", "missing")


def test_webvid_allinone_tsv(tmp_path):
    path = write(
        tmp_path,
        "webvid_validation_success_full.tsv",
        "caption\tvideoid\nA dog, running\t1066/1066674\nSunset over sea\t5/12.mp4\n",
    )
    assert read_webvid_csv(path) == [
        RetrievalRecord("1066/1066674.mp4", ("A dog, running",)),
        RetrievalRecord("5/12.mp4", ("Sunset over sea",)),
    ]
    dup = write(tmp_path, "w.tsv", "caption\tvideoid\na\tx\nb\tx\n")
    raises(lambda: read_webvid_csv(dup), "line 3", "duplicate id 'x.mp4' (first at line 2)")


def test_webvid_public_csv(tmp_path):
    path = write(
        tmp_path,
        "results_2M_val.csv",
        "videoid,contentUrl,duration,page_dir,name\n"
        '31353427,https://x/a.mp4,PT00H00M15S,000001_000050,"Aerial, shot of a city"\n'
        "8,https://x/b.mp4,PT00H00M09S,000051_000100,Bees\n",
    )
    assert read_webvid_csv(path) == [
        RetrievalRecord("000001_000050/31353427.mp4", ("Aerial, shot of a city",)),
        RetrievalRecord("000051_000100/8.mp4", ("Bees",)),
    ]
    short = write(tmp_path, "webvid.csv", "videoid,name\n1,a\n2\n")
    raises(lambda: read_webvid_csv(short), "line 3", "expected 2 columns, got 1")


def test_llava_conversations(tmp_path):
    data = [
        {
            "id": "v_abc",
            "video": "valley/abc.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nWhat happens?"},
                {"from": "gpt", "value": "A man cooks."},
            ],
        },
        {"id": "v_abc", "conversations": [{"from": "human", "value": "hi"}]},
    ]
    records = read_llava_json(write(tmp_path, "train.json", data))
    assert records[0].video == "valley/abc.mp4" and records[0].image is None
    assert records[0].conversations[1] == ConversationTurn("gpt", "A man cooks.")
    assert records[1].video is None and records[1].id == "v_abc"  # ids may repeat
    data[1]["conversations"][0]["from"] = "assistant"
    raises(
        lambda: read_llava_json(write(tmp_path, "t.json", data)),
        "index 1",
        "field 'conversations[0].from'",
        "'assistant'",
    )


def test_videollava_qa_pairs_by_index(tmp_path):
    q = write(
        tmp_path,
        "test_q.json",
        [
            {"video_name": "v1", "question": "q1", "question_id": "a_0"},
            {"video_name": "v2", "question": "q2", "question_id": "a_1"},
        ],
    )
    a = write(tmp_path, "test_a.json", [{"answer": "yes", "type": 3, "question_id": "a_0"}])
    raises(lambda: read_videollava_qa(q, a), "1 answers for 2 questions")
    a = write(
        tmp_path,
        "test_a.json",
        [
            {"answer": "yes", "type": "3", "question_id": "a_0"},
            {"answer": "no", "question_id": "a_1"},
        ],
    )
    assert read_videollava_qa(q, a) == [
        QARecord("v1", "q1", "yes", ("yes",), "a_0", "3"),
        QARecord("v2", "q2", "no", ("no",), "a_1", None),
    ]
    a = write(
        tmp_path,
        "test_a.json",
        [{"answer": "yes", "question_id": "a_1"}, {"answer": "no", "question_id": "a_0"}],
    )
    raises(
        lambda: read_videollava_qa(q, a),
        "index 0",
        "field 'question_id'",
        "'a_1' != question's 'a_0'",
    )
