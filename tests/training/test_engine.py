"""Unit tests of the training engine: config, schedule, samplers, gathering, task losses."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import leanvl
from leanvl.config import ConfigError
from leanvl.training.config import TaskConfig, load_train_config
from leanvl.training.data import EvalShardSampler, StepSampler
from leanvl.training.module import gather_rows, lr_lambda, param_groups
from leanvl.training.tasks import build_task, prepare_video, shuffle_frames


def test_unknown_key_names_key_and_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'; did you mean 'lr'"):
        load_train_config({"data": {"root": "x"}}, overrides=["optim.lrr=1"])


def test_bad_task_name_is_rejected_with_suggestion():
    with pytest.raises(ConfigError, match=r"task.name='retreival'.*did you mean 'retrieval'"):
        load_train_config({"data": {"root": "x"}, "task": {"name": "retreival"}})


def test_lr_schedule_warmup_then_linear_decay():
    values = [lr_lambda(s, total=10, warmup=0.2, end_ratio=0.0, power=1.0) for s in range(10)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == 1.0
    assert values[6] == pytest.approx(0.5)
    assert values[9] == pytest.approx(1 / 8)
    assert lr_lambda(5, total=10, warmup=0, end_ratio=0.1, power=1.0) == pytest.approx(0.55)


def test_param_groups_skip_decay_on_norms_and_biases_and_scale_heads():
    model = leanvl.create_model("allinone_tiny", num_answers=5)
    cfg = load_train_config({"data": {"root": "x"}, "optim": {"lr": 1e-3, "lr_mult": 10}}).optim
    groups = param_groups(model, cfg)
    by_id = {id(p): g for g in groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert by_id[id(names["transformer.blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert by_id[id(names["transformer.blocks.0.attn.qkv.bias"])]["weight_decay"] == 0.0
    assert by_id[id(names["transformer.blocks.0.attn.qkv.weight"])]["weight_decay"] == 0.01
    assert by_id[id(names["vqa_classifier.1.weight"])]["lr"] == pytest.approx(1e-2)
    assert by_id[id(names["pooler.dense.weight"])]["lr"] == pytest.approx(1e-3)
    assert sum(len(g["params"]) for g in groups) == len(names)


def test_step_sampler_resumes_exactly_and_covers_each_epoch():
    full = list(StepSampler(10, batch_size=4, num_batches=6, seed=3))
    tail = list(StepSampler(10, batch_size=4, num_batches=6, seed=3, start_batch=2))
    assert tail == full[8:]
    first_epoch = [i for i, _ in full[:10]]
    assert sorted(first_epoch) == list(range(10))
    assert len({s for _, s in full}) == len(full)  # every position has its own seed


def test_step_sampler_ranks_split_the_global_batch():
    r0 = list(StepSampler(12, batch_size=3, num_batches=2, seed=0, rank=0, world=2))
    r1 = list(StepSampler(12, batch_size=3, num_batches=2, seed=0, rank=1, world=2))
    one = list(StepSampler(12, batch_size=6, num_batches=2, seed=0))
    assert r0[:3] + r1[:3] == one[:6]
    assert sorted(i for i, _ in r0 + r1) == list(range(12))


def test_gather_rows_drops_padded_duplicates():
    shards = [list(EvalShardSampler(7, rank, 3)) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    index = torch.tensor([i for s in shards for i, _ in s])
    rows = {"index": index, "value": index.float() * 10}
    out = gather_rows(None, rows)
    assert out["index"].tolist() == list(range(7))
    assert out["value"].tolist() == [10.0 * i for i in range(7)]


def test_shuffle_frames_is_never_identity_and_ignores_batching():
    video = torch.arange(6 * 3).view(6, 3, 1).expand(6, 3, 2).clone()
    index = torch.arange(6)
    once = shuffle_frames(video, index)
    halves = torch.cat([shuffle_frames(video[:3], index[:3]), shuffle_frames(video[3:], index[3:])])
    assert torch.equal(once, halves)
    for b in range(6):
        assert not torch.equal(once[b], video[b])
        assert sorted(once[b, :, 0].tolist()) == video[b, :, 0].tolist()


def test_prepare_video_normalises_like_imagenet():
    video = torch.full((1, 1, 2, 2, 3), 255, dtype=torch.uint8)
    x = prepare_video(video)
    assert x.shape == (1, 1, 3, 2, 2)
    assert x[0, 0, :, 0, 0].tolist() == pytest.approx(
        [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rel=1e-5
    )


def _tiny_model():
    torch.manual_seed(0)
    return leanvl.create_model(
        "allinone_tiny", image_size=32, patch_size=8, drop_rate=0.0, drop_path_rate=0.0
    ).eval()


def test_vtc_loss_is_symmetric_infonce():
    model = _tiny_model()
    task = build_task(TaskConfig(name="pretrain", temperature=0.1), None, 40)
    video = torch.randn(3, 3, 3, 32, 32)
    ids = torch.tensor([[101, 2000, 102], [101, 3000, 102], [101, 4000, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        loss = task.vtc_loss(model, video, ids, mask)
        t = F.normalize(model.encode_text(ids, mask), dim=-1)
        v = F.normalize(model.encode_video(video), dim=-1)
        s = t @ v.t() / 0.1
        expected = -(s.log_softmax(1).diag().mean() + s.t().log_softmax(1).diag().mean())
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert math.isfinite(float(loss))


def test_itm_labels_half_positive_and_reversed_negatives():
    model = _tiny_model()
    task = build_task(TaskConfig(name="pretrain", itm_reversed=1.0), None, 40)
    video = torch.randn(4, 3, 3, 32, 32)
    ids = torch.tensor([[101, 2000, 102]] * 4)
    seen = {}

    def spy(pairs, text_ids, text_mask):
        seen["pairs"] = pairs
        return model.__class__.forward(model, pairs, text_ids, text_mask)

    model.forward = spy  # record what the ITM pass sees
    torch.manual_seed(1)
    task.itm_loss(model, video, ids, torch.ones_like(ids), torch.arange(4))
    pairs = seen["pairs"]
    same = [torch.equal(pairs[b], video[b]) for b in range(4)]
    rev = [torch.equal(pairs[b], video[b].flip(0)) for b in range(4)]
    assert sum(same) == 2 and sum(rev) == 2  # half positives; every negative is the reversed clip


def test_model_code_does_not_import_lightning():
    code = (
        "import sys, leanvl, leanvl.models, leanvl.data.datasets, leanvl.video, leanvl.metrics;"
        "leanvl.create_model('allinone_tiny');"
        "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_in_one_uses_the_engine_defaults_and_other_families_are_looked_up():
    from leanvl.training.families import hooks_for

    assert hooks_for("allinone_tiny") is None
    assert hooks_for("no_such_model") is None
