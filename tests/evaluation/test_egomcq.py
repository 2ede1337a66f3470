"""EgoMCQ evaluation: real decoding of the synthetic ego videos, a random-init svitt_ego_tiny."""

import json

import pytest
import torch

import leanvl
from leanvl.data import read_egomcq_json
from leanvl.data.datasets import EgoMCQDataset
from leanvl.evaluation import (
    SViTTTextCollator,
    egomcq_dataset,
    egomcq_scores,
    evaluate_egomcq,
    svitt_text_ids,
)
from leanvl.text import load_tokenizer
from leanvl.video.transforms import build_transform


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return leanvl.create_model("svitt_ego_tiny")


def test_pipeline_counts_and_scores_match_the_data(tiny_ego, model):
    annotation = tiny_ego / "annotations" / "egomcq.json"
    raw = json.loads(annotation.read_text())
    intra = [
        len({c["video_uid"] for c in q["choices"].values()} | {q["query"]["video_uid"]}) == 1
        for q in raw.values()
    ]
    # 2 frames per clip (the model takes <= 4) keep this 250-clip pass cheap
    dataset = egomcq_dataset(annotation, tiny_ego / "videos_ego", num_frames=2, image_size=64)
    model.train()
    result = evaluate_egomcq(model, dataset, batch_size=10, return_scores=True)
    assert model.training  # restored
    assert result["n"] == len(raw) == 50
    assert (result["n_intra"], result["n_inter"]) == (sum(intra), len(intra) - sum(intra))
    answers = torch.tensor([q["answer"] for q in raw.values()])
    assert torch.equal(result["answers"], answers)
    assert torch.equal(result["is_intra"], torch.tensor(intra))
    correct = result["scores"].argmax(1) == answers
    mask = torch.tensor(intra)
    assert result["intra"] == pytest.approx(correct[mask].float().mean().item())
    assert result["inter"] == pytest.approx(correct[~mask].float().mean().item())
    # random init: no better than chance by a wide margin (5 choices -> 0.2)
    assert 0.0 <= result["accuracy"] <= 0.5
    # scores are cosine similarities, equal to a one-question pass
    assert result["scores"].abs().max() <= 1.0 + 1e-5
    sample = dataset[3]
    ids, mask = svitt_text_ids(load_tokenizer(), [sample["text"]], 32)
    model.eval()
    one = egomcq_scores(model, sample["video"][None], ids, mask, torch.Generator().manual_seed(0))
    # question 3 is in the first batch, which drew its block tables first from seed 0 too
    assert torch.allclose(one[0], result["scores"][3], atol=1e-5)


def _clip(uid, k):
    return {
        "video_uid": uid,
        "clip_start": float(k),
        "clip_end": float(k + 1),
        "narration_time": k + 0.5,
        "clip_text": f"#C C moves the object {k}",
        "tag_verb": "[0]",
        "tag_noun": "[1]",
    }


def _question(query, choices, answer, types):
    return {
        "answer": answer,
        "query": query,
        "types": types,
        "choices": {str(i): c for i, c in enumerate(choices)},
    }


def test_intra_inter_come_from_the_data_not_the_types_field(tiny_ego, model, tmp_path):
    uids = sorted(p.name for p in (tiny_ego / "videos_ego").iterdir())[-5:]  # the MCQ videos
    same = [_clip(uids[0], k) for k in range(5)]
    other = [_clip(u, 2) for u in uids]
    mixed = [_clip(uids[1], k) for k in range(4)] + [_clip(uids[2], 4)]
    # EgoVLP's dataset code reads types 1 = inter, 2 = intra: every type below is the wrong one
    questions = {
        "0": _question(same[0], same, 0, 1),
        "1": _question(other[0], other, 0, 2),
        "2": _question(mixed[0], mixed, 0, 2),
    }
    path = tmp_path / "egomcq.json"
    path.write_text(json.dumps(questions))
    records = read_egomcq_json(path)
    assert [r.intra for r in records] == [True, False, False]
    dataset = egomcq_dataset(path, tiny_ego / "videos_ego", num_frames=4, image_size=64)
    first = evaluate_egomcq(model, dataset, return_scores=True)
    best = first["scores"].argmax(1).tolist()
    # make the intra question right and both inter questions wrong, then evaluate again
    questions["0"]["answer"] = best[0]
    questions["1"]["answer"] = (best[1] + 1) % 5
    questions["2"]["answer"] = (best[2] + 1) % 5
    path.write_text(json.dumps(questions))
    dataset = egomcq_dataset(path, tiny_ego / "videos_ego", num_frames=4, image_size=64)
    result = evaluate_egomcq(model, dataset)
    assert result == {
        "intra": 1.0,
        "inter": 0.0,
        "n_intra": 1,
        "n_inter": 2,
        "n": 3,
        "accuracy": pytest.approx(1 / 3),
    }


def test_collated_loader_input_and_errors(tiny_ego, model):
    records = read_egomcq_json(tiny_ego / "annotations" / "egomcq.json")[:4]
    dataset = EgoMCQDataset(
        records,
        tiny_ego / "videos_ego",
        4,
        sample="middle",
        transform=build_transform("svitt", size=64),
        on_error="raise",
    )
    collate = SViTTTextCollator(load_tokenizer(), max_length=16)
    batches = [collate([dataset[i] for i in range(j, j + 2)]) for j in (0, 2)]
    result = evaluate_egomcq(model, batches, return_scores=True)
    assert result["n"] == 4 and result["index"].tolist() == [0, 1, 2, 3]
    again = evaluate_egomcq(model, batches, return_scores=True)  # seeded block tables
    assert torch.equal(again["scores"], result["scores"])
    with pytest.raises(ValueError, match="no batch"):
        evaluate_egomcq(model, [])
    with pytest.raises(ValueError, match="sample='rand'"):
        egomcq_dataset(tiny_ego / "annotations" / "egomcq.json", tiny_ego, sample="rand")


def test_svitt_text_ids_have_no_sep():
    tokenizer = load_tokenizer()
    ids, mask = svitt_text_ids(tokenizer, ["c c opens the door", "one two three four five"], 5)
    # official ALBEF tokenizer: [CLS] + word pieces, no [SEP], truncated to max_length in all
    assert ids.tolist() == [
        [101, 1039, 1039, 7480, 1996],
        [101, 2028, 2048, 2093, 2176],
    ]
    assert mask.tolist() == [[1] * 5, [1] * 5]
    ids, mask = svitt_text_ids(tokenizer, ["c c"], 5)
    assert ids.tolist() == [[101, 1039, 1039, 0, 0]] and mask.tolist() == [[1, 1, 1, 0, 0]]
