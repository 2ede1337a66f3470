"""Parameter counts: components sum to the total; full presets equal the specs' counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import leanvl
from leanvl.bench.params import count_parameters
from leanvl.bench.workloads import build_workload


def test_components_sum_to_total_and_tied_weights_count_once():
    model = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10)})
    model["head"].weight = model["embed"].weight  # tied
    counted = count_parameters(model)
    assert counted.by_component == {"embed": 40, "head": 10}
    assert counted.total == sum(counted.by_component.values()) == 50


def _meta(name: str, **overrides) -> nn.Module:
    with torch.device("meta"):
        return leanvl.create_model(name, **overrides)


@pytest.mark.parametrize(
    ("name", "backbone"),
    [("allinone_ti", 11_431_104), ("allinone_s", 33_553_536), ("allinone_b", 109_867_776)],
)
def test_allinone_backbone_equals_spec(name, backbone):
    counted = count_parameters(_meta(name))
    by = counted.by_component
    assert counted.total == sum(by.values())
    assert counted.total - by["itm_score"] - by["mlm_score"] == backbone


def test_svitt_base_at_4_frames_equals_spec():
    counted = count_parameters(_meta("svitt_base", num_frames=4))
    assert counted.total == 203_394_653
    assert counted.by_component["vision"] == 86_391_840


def test_videopanda_7b_stab_and_projector_equal_spec():
    model = _meta("videopanda_7b")
    counted = count_parameters(model)
    assert counted.by_component == {"stab": 24_086_866, "projector": 20_979_712}
    assert counted.total == 45_066_578
    assert model.llm is None  # the 7B LLM is never built by the benchmark


def test_workload_groups_svitt_components():
    workload = build_workload("svitt_tiny", frames=4)
    counted = count_parameters(workload.model, workload.component_of)
    assert set(counted.by_component) == {"heads", "vision", "text", "text+fusion"}
    assert counted.total == sum(p.numel() for p in workload.model.parameters())
