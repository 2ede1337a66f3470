import math

import pytest
import torch

from leanvl.metrics import (
    egomcq_accuracy,
    mc_accuracy,
    qa_accuracy,
    ranks_of_targets,
    retrieval_metrics,
)


def test_ranks_hand_computed():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.5, 0.5, 0.1]])
    # row 0 target 2 -> one better (0.9) -> rank 2; row 1 target 0 -> rank 3;
    # row 2 target 1 tied with wrong item 0 -> pessimistic rank 2.
    assert ranks_of_targets(scores, [[2], [0], [1]]).tolist() == [2, 3, 2]
    # several targets: the best-scored counts
    assert ranks_of_targets(scores, [[1, 2], [0, 2], [0, 1]]).tolist() == [2, 1, 1]


def test_retrieval_metrics_multi_caption():
    # 3 videos, 5 texts; texts 0,1 -> video 0; 2,3 -> video 1; 4 -> video 2.
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # rank 1
            [0.1, 0.9, 0.0],  # rank 2
            [0.0, 0.8, 0.9],  # rank 2
            [0.0, 0.9, 0.1],  # rank 1
            [0.0, 0.2, 0.3],  # rank 1
        ]
    )
    m = retrieval_metrics(sim, [0, 0, 1, 1, 2], ks=(1, 5))
    assert m["t2v_r1"] == pytest.approx(3 / 5)
    assert m["t2v_r5"] == 1.0
    assert m["t2v_medr"] == 1.0 and m["t2v_meanr"] == pytest.approx(7 / 5)
    # v2t: video 0's best caption is text 0 (0.9, top of its column) -> 1; video 1's best is
    # text 3 (0.9) but wrong text 1 ties at 0.9 -> pessimistic 2; video 2's only caption is
    # text 4 (0.3), below text 2 (0.9) -> 2.
    assert m["v2t_r1"] == pytest.approx(1 / 3) and m["v2t_medr"] == 2.0
    assert m["r_mean"] == pytest.approx((3 / 5 + 1 + 1 / 3 + 1) / 4)


def test_retrieval_constant_scores_are_chance_not_perfect():
    m = retrieval_metrics(torch.zeros(10, 10), list(range(10)))
    assert m["t2v_r1"] == 0.0 and m["t2v_medr"] == 10.0


def test_retrieval_validates():
    with pytest.raises(ValueError, match="without any caption"):
        retrieval_metrics(torch.zeros(2, 3), [0, 1])
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(torch.zeros(2, 2), [0, 5])


def test_qa_accuracy_counts_oov_as_wrong():
    preds = torch.tensor([1, 2, 3, 0])
    labels = torch.tensor([1, 0, -100, 0])
    m = qa_accuracy(preds, labels, types=["static", "temporal", "temporal", "static"])
    assert m["accuracy"] == pytest.approx(2 / 4)
    assert m["accuracy_in_vocab"] == pytest.approx(2 / 3)
    assert m["n_out_of_vocab"] == 1
    assert m["by_type"] == {"static": 1.0, "temporal": 0.0}
    assert "by_kind" not in m


def test_qa_accuracy_by_kind():
    preds = torch.tensor([1, 2, 3, 0, 4])
    labels = torch.tensor([1, 0, -100, 0, 4])
    kinds = ["count", "direction", "direction", None, "count"]
    m = qa_accuracy(preds, labels, kinds=kinds)
    assert m["by_kind"] == {"count": 1.0, "direction": 0.0}
    assert "by_kind" not in qa_accuracy(preds, labels, kinds=[None] * 5)
    with pytest.raises(ValueError, match="4 types for 5"):
        qa_accuracy(preds, labels, kinds=kinds[:4])


def test_mc_accuracy():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.1], [0.0, 0.0, 1.0]])
    m = mc_accuracy(scores, torch.tensor([1, 1, 2]), types=["a", "b", "a"])
    assert m["accuracy"] == pytest.approx(2 / 3) and m["by_type"] == {"a": 1.0, "b": 0.0}


def test_egomcq_accuracy_split_from_data():
    scores = torch.eye(5)[[0, 1, 2, 3]]  # predicts 0, 1, 2, 3
    answers = torch.tensor([0, 1, 0, 0])
    m = egomcq_accuracy(scores, answers, [True, False, True, False])
    assert m == {"intra": 0.5, "inter": 0.5, "n_intra": 2, "n_inter": 2}
    m = egomcq_accuracy(scores[:1], answers[:1], [True])
    assert m["intra"] == 1.0 and math.isnan(m["inter"]) and m["n_inter"] == 0
