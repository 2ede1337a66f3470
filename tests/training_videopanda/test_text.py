"""Word-level tokenizer, conversation ids/labels and annotation conversion of the Video-Panda
recipes."""

from __future__ import annotations

import json

import pytest

from leanvl.data.annotations import read_llava_json, read_qa_json, read_retrieval_json
from leanvl.data.records import AnnotationError, ConversationRecord, ConversationTurn
from leanvl.models.videopanda import build_prompt, tokenize_prompt
from leanvl.training.families.videopanda_text import (
    CAPTION_PROMPT,
    build_word_tokenizer,
    conversation_turns,
    encode_conversation,
    normalize_answer,
    read_conversations,
    synth_to_llava,
    tokenizer_from_json,
)


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(["what color is the square?", "red", "blue square moves left"])


def test_tokenizer_special_ids_and_words(tok):
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok("What color IS the square?").input_ids
    assert ids[0] == 1 and 0 not in ids  # BOS first, every word known (lower-cased)
    assert tok.decode(ids[1:]) == "what color is the square ?"
    assert tok("a purple thing").input_ids[1:] == [tok.convert_tokens_to_ids("a"), 0, 0]
    # "</s>" inside a text is the end token, not three pieces
    assert tok("red</s>").input_ids == [1, tok.convert_tokens_to_ids("red"), 2]


def test_tokenizer_json_round_trip(tok):
    again = tokenizer_from_json(tok.backend_tokenizer.to_str())
    text = "A chat between a curious user: what color is the square? red</s>"
    assert again(text).input_ids == tok(text).input_ids
    assert len(again) == len(tok)
    with pytest.raises(ValueError, match="not a tokenizers JSON"):
        tokenizer_from_json("{}")


def test_encode_conversation_keeps_only_answers(tok):
    turns = [("what color is the square?", "red"), ("and the square?", "blue")]
    ids, labels = encode_conversation(turns, tok, num_frames=4)
    assert ids == tokenize_prompt(build_prompt(turns, "vicuna_v1", 4), tok)
    assert ids.count(-200) == 4
    kept = [i for i, lab in zip(ids, labels, strict=True) if lab != -100]
    assert tok.decode(kept) == "red </s> blue </s>"
    assert all(lab in (-100, i) for i, lab in zip(ids, labels, strict=True))
    # the answer of round 1 comes right after "ASSISTANT :" of round 1
    first = labels.index(tok.convert_tokens_to_ids("red"))
    assert tok.decode(ids[first - 2 : first]) == "assistant :"


def test_normalize_answer():
    assert normalize_answer(" Red.</s>") == "red"
    assert normalize_answer("Two  objects!") == "two objects"


def test_read_conversations_of_each_format(vp_synth):
    ann = vp_synth / "annotations"
    qa = read_conversations(ann / "qa_test.json")
    records = read_qa_json(ann / "qa_test.json")
    assert len(qa) == len(records)
    assert qa[0]["turns"] == [[(records[0].question, records[0].answer)]]
    assert qa[0]["type"] == records[0].type and qa[0]["question_id"] == records[0].question_id
    cap = read_conversations(ann / "ret_train.json")
    ret = read_retrieval_json(ann / "ret_train.json")
    assert [t[0][1] for t in cap[0]["turns"]] == list(ret[0].captions)
    assert {t[0][0] for t in cap[0]["turns"]} == {CAPTION_PROMPT}


def test_synth_to_llava_round_trip(vp_synth, tmp_path):
    written = synth_to_llava(vp_synth, tmp_path)
    assert {"llava_qa_train.json", "llava_caption_test.json"} <= set(written)
    llava = read_llava_json(written["llava_qa_test.json"])
    records = read_qa_json(vp_synth / "annotations" / "qa_test.json")
    assert [r.id for r in llava] == [r.question_id for r in records]
    assert llava[3].conversations[0].value == f"<video>\n{records[3].question}"
    again = read_conversations(written["llava_qa_test.json"])
    assert again[3]["turns"] == [[(records[3].question, records[3].answer)]]
    raw = json.loads(written["llava_qa_test.json"].read_text())
    assert raw[0]["type"] == records[0].type


def test_bad_conversations_are_named(tmp_path):
    rec = ConversationRecord(
        "v.mp4", None, (ConversationTurn("gpt", "hi"), ConversationTurn("human", "?"))
    )
    with pytest.raises(ValueError, match=r"x\.json index 0: conversations\[0:2\]"):
        conversation_turns(rec, "x.json index 0")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video": "a.mp4", "label": 3}]))
    with pytest.raises(AnnotationError, match="unknown annotation kind"):
        read_conversations(bad)
