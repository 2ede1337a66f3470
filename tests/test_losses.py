"""InfoNCE and EgoNCE against hand-computed values and a plain float64 loop of the definitions."""

import math

import pytest
import torch

from leanvl.losses import (
    ego_nce,
    egonce_positive_mask,
    info_nce,
    tag_cosine_similarity,
    tag_multi_hot,
)
from leanvl.models.svitt import itc_loss


def reference_ego_nce(sim, verbs, nouns, temperature, mode):
    """EgoNCE written from the definition: sets of shared classes, one row at a time."""
    n = len(verbs)

    def positive(i, j):
        if i == j:
            return True
        shared_verb = bool(set(verbs[i]) & set(verbs[j]))
        shared_noun = bool(set(nouns[i]) & set(nouns[j]))
        return {"verb_noun": shared_verb and shared_noun, "noun": shared_noun, "verb": shared_verb}[
            mode
        ]

    def direction(matrix):
        total = 0.0
        for i in range(n):
            exps = [math.exp(matrix[i][j] / temperature) for j in range(n)]
            pos = sum(e for j, e in enumerate(exps) if positive(i, j))
            total += -math.log(pos / sum(exps))
        return total / n

    rows = sim.double().tolist()
    cols = [list(c) for c in zip(*rows, strict=True)]
    return direction(rows) + direction(cols)


TAGS = {
    # clip 0 and 1 share verb 1 and noun 3; clip 2 shares only verb 1 with both
    "verb_noun_pair": ([[1], [1, 4], [1]], [[2, 3], [3], [5]]),
    # 0-1 share a noun only, 0-2 a verb only: no verb+noun positive
    "split": ([[1], [4], [1]], [[2, 3], [3], [5]]),
    # clip 2 has no tag at all
    "untagged": ([[0], [0], []], [[1], [1], []]),
}


@pytest.mark.parametrize("mode", ["verb_noun", "noun", "verb"])
@pytest.mark.parametrize("tags", sorted(TAGS))
def test_ego_nce_matches_float64_loop(tags, mode):
    verbs, nouns = TAGS[tags]
    sim = torch.tensor([[0.9, 0.2, -0.3], [0.4, 0.7, 0.1], [-0.5, 0.6, 0.8]])
    verb_vec, noun_vec = tag_multi_hot(verbs, nouns, num_verbs=6, num_nouns=6)
    got = ego_nce(sim, verb_vec, noun_vec, temperature=0.05, mode=mode)
    want = reference_ego_nce(sim, verbs, nouns, 0.05, mode)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_ego_nce_hand_computed_uniform_similarity():
    # sim = 0: every softmax entry is 1/3. verb_noun positives: {0,1} for rows 0 and 1, {2} for
    # row 2 -> each direction = -(2 log(2/3) + log(1/3)) / 3; EgoNCE sums the two directions.
    verbs, nouns = TAGS["verb_noun_pair"]
    verb_vec, noun_vec = tag_multi_hot(verbs, nouns, 6, 6)
    loss = ego_nce(torch.zeros(3, 3), verb_vec, noun_vec, temperature=0.05)
    assert loss.item() == pytest.approx(2 / 3 * (2 * math.log(1.5) + math.log(3)), rel=1e-6)
    # verb mode: verb 1 is shared by all three clips -> every entry positive -> loss 0
    assert ego_nce(torch.randn(3, 3), verb_vec, noun_vec, mode="verb").item() == pytest.approx(
        0.0, abs=1e-6
    )


def test_positive_mask_modes():
    verbs, nouns = TAGS["split"]
    verb_vec, noun_vec = tag_multi_hot(verbs, nouns, 6, 6)
    eye = torch.eye(3, dtype=torch.bool)
    assert torch.equal(egonce_positive_mask(verb_vec, noun_vec, "verb_noun"), eye)
    noun = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    verb = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    assert torch.equal(egonce_positive_mask(None, noun_vec, "noun"), noun)
    assert torch.equal(egonce_positive_mask(verb_vec, None, "verb"), verb)
    with pytest.raises(ValueError, match="mode='both'"):
        egonce_positive_mask(verb_vec, noun_vec, "both")
    with pytest.raises(ValueError, match="needs noun_vec"):
        egonce_positive_mask(verb_vec, None, "verb_noun")


def test_ego_nce_without_shared_actions_is_twice_info_nce():
    torch.manual_seed(0)
    sim = torch.randn(5, 5).clamp(-1, 1)
    verb_vec, noun_vec = tag_multi_hot([[i] for i in range(5)], [[0]] * 5, 5, 1)
    ego = ego_nce(sim, verb_vec, noun_vec, temperature=0.05)
    assert ego.item() == pytest.approx(2 * info_nce(sim, 0.05).item(), rel=1e-5)


def test_info_nce_is_svitt_itc_and_clip():
    torch.manual_seed(1)
    sim = torch.randn(4, 4) * 3
    idx = torch.tensor([7, 3, 7, 5])
    mask = idx[:, None] == idx[None, :]
    assert info_nce(sim, 1.0, mask).item() == pytest.approx(itc_loss(sim, idx).item(), rel=1e-6)
    labels = torch.arange(4)
    clip = (
        torch.nn.functional.cross_entropy(sim / 0.5, labels)
        + torch.nn.functional.cross_entropy(sim.t() / 0.5, labels)
    ) / 2
    assert info_nce(sim, 0.5).item() == pytest.approx(clip.item(), rel=1e-6)
    with pytest.raises(ValueError, match="without any positive"):
        info_nce(sim, 1.0, torch.zeros(4, 4))


def test_info_nce_asymmetric_mask_uses_transpose_for_columns():
    sim = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    rows = -(0.5 * torch.log_softmax(sim[0], 0).sum() + torch.log_softmax(sim[1], 0)[1])
    # columns: column 0 has positive {0}; column 1 has positives {0, 1}
    cols = -(torch.log_softmax(sim[:, 0], 0)[0] + 0.5 * torch.log_softmax(sim[:, 1], 0).sum())
    want = (rows / 2 + cols / 2) / 2
    assert info_nce(sim, 1.0, mask).item() == pytest.approx(want.item(), rel=1e-12)


def test_gradients_flow_and_match_finite_differences():
    verbs, nouns = TAGS["verb_noun_pair"]
    verb_vec, noun_vec = tag_multi_hot(verbs, nouns, 6, 6)
    sim = torch.tensor(
        [[0.3, 0.1, -0.2], [0.0, 0.5, 0.2], [-0.4, 0.3, 0.6]],
        dtype=torch.float64,
        requires_grad=True,
    )
    assert torch.autograd.gradcheck(lambda s: ego_nce(s, verb_vec, noun_vec, 0.05), (sim,))
    assert torch.autograd.gradcheck(lambda s: info_nce(s, 0.05), (sim,))
    temp = torch.tensor(0.07, requires_grad=True)
    ego_nce(sim.detach().float(), verb_vec, noun_vec, temp).backward()
    assert temp.grad is not None and temp.grad.item() != 0.0


def test_tag_multi_hot_and_cosine():
    verb_vec, noun_vec = tag_multi_hot([(2,), (0, 2)], [(1,), ()], num_verbs=3, num_nouns=2)
    assert torch.equal(verb_vec, torch.tensor([[0.0, 0, 1], [1, 0, 1]]))
    assert torch.equal(noun_vec, torch.tensor([[0.0, 1], [0, 0]]))
    cos = tag_cosine_similarity(verb_vec)
    assert cos[0, 1].item() == pytest.approx(1 / math.sqrt(2))
    assert tag_cosine_similarity(noun_vec)[1, 1].item() == 0.0  # untagged: not even itself
    with pytest.raises(ValueError, match="tag_noun: tag id 7 outside"):
        tag_multi_hot([(0,)], [(7,)], 3, 2)
    with pytest.raises(ValueError, match="2 tag_verb lists but 1"):
        tag_multi_hot([(0,), (1,)], [(0,)], 3, 2)
