"""``leanvl bench model`` and ``leanvl bench all`` end to end on the tiny presets."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from leanvl.bench.report import BEGIN, END, splice_markdown
from leanvl.bench.workloads import build_workload, llama_prefill_flops
from leanvl.cli import app
from leanvl.models.videopanda import LlamaArchitecture

RECORD_KEYS = {
    "model", "family", "variant", "frames", "batch", "mode", "device", "dtype", "params",
    "flops", "tokens", "latency_s", "throughput_clips_per_s", "peak_memory_bytes",
    "peak_memory_method", "limit",
}  # fmt: skip


def test_bench_model_svitt_tiny_json(tmp_path):
    out = tmp_path / "svitt.json"
    args = ["bench", "model", "svitt_tiny", "--compare", "dense", "--runs", "1", "--json", str(out)]
    args += ["--peak-size", "256"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert set(doc) >= {"environment", "matmul_peak", "config", "results", "command"}
    sparse, dense = doc["results"]
    assert set(sparse) == RECORD_KEYS
    assert (sparse["variant"], dense["variant"], sparse["frames"]) == ("default", "dense", 4)
    # tokens: 1 + 4*7*7 in; keep ceil(0.7 n) after layers 1 and 2
    assert sparse["tokens"] == {
        "video_in": 197, "after_layer_1": 139, "after_layer_2": 98, "into_fusion": 98, "text": 32,
    }  # fmt: skip
    assert dense["tokens"]["into_fusion"] == 197
    for record in (sparse, dense):
        flops = record["flops"]
        assert flops["crosscheck_rel_diff"] == 0.0
        assert flops["total"] == sum(flops["by_category"].values())
        assert flops["total"] == sum(flops["by_component"].values())
        assert record["params"]["total"] == sum(record["params"]["by_component"].values())
        limit, median = record["limit"], record["latency_s"]["median"]
        bound = flops["per_clip"] / limit["matmul_peak_flops_per_s"]
        assert limit["lower_bound_s_per_clip"] == pytest.approx(bound)
        assert limit["achieved_fraction"] == pytest.approx(bound / median)
        assert record["throughput_clips_per_s"] == pytest.approx(1 / median)
    assert (
        dense["flops"]["by_category"]["attention"] > 3 * sparse["flops"]["by_category"]["attention"]
    )
    assert "| default | 4 | 1 |" in result.output


def test_bench_model_usage_errors():
    runner = CliRunner()
    unknown = runner.invoke(app, ["bench", "model", "svitt_tiyn", "--no-timing"])
    assert unknown.exit_code == 2 and "svitt_tiny" in unknown.output
    variant = runner.invoke(app, ["bench", "model", "allinone_tiny", "--compare", "dense"])
    assert variant.exit_code == 2 and "no_roll" in variant.output


def test_llama_prefill_flops_by_hand():
    arch = LlamaArchitecture(
        vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    flops = llama_prefill_flops(arch, tokens=5)
    per_layer = 8 * 8 * 2 + 8 * 4 * 2 + 3 * 8 * 16  # q, o; k, v (one kv head of 4); MLP
    assert flops["linear"] == 2 * 5 * (2 * per_layer + 8 * 10)
    assert flops["attention"] == 2 * 2 * 8 * 25


def test_videopanda_tokens_into_llm():
    workload = build_workload("videopanda_tiny", frames=8)
    out = workload.forward()
    tokens = workload.tokens(out)
    # 72 px / patch 4 = 18x18 patches -> 9x9 LSD tokens -> 1 + 9 * (9 + 1) per frame
    assert tokens["per_frame"] == 91
    assert tokens["visual_into_llm"] == 8 * 91


def test_splice_markdown_keeps_hand_written_sections():
    existing = "# Benchmarks\n\nintro\n\n## Video decoding\n\nhand-written\n"
    block = f"{BEGIN}\nnew\n{END}"
    first = splice_markdown(existing, block)
    assert first.index("new") < first.index("## Video decoding") and "hand-written" in first
    again = splice_markdown(first.replace("new", "old"), f"{BEGIN}\nnewer\n{END}")
    assert "old" not in again and again.count(BEGIN) == 1 and "hand-written" in again


def test_bench_all_tiny_regenerates_the_block(tmp_path):
    doc_path = tmp_path / "benchmarks.md"
    doc_path.write_text("# Benchmarks\n\nintro\n\n## Video decoding\n\nhand-written\n")
    result = CliRunner().invoke(
        app, ["bench", "all", "--tiny", "--runs", "1", "--output", str(doc_path)]
    )
    assert result.exit_code == 0, result.output
    text = doc_path.read_text()
    assert text.count(BEGIN) == 1 and "hand-written" in text
    assert "| videopanda_7b | 45,066,578 | 45,066,578 | 45,066,578 | yes |" in text
    results = json.loads((tmp_path / "benchmarks" / "results.json").read_text())
    assert {r["model"] for r in results["results"]} == {
        "allinone_tiny", "svitt_tiny", "videopanda_tiny",
    }  # fmt: skip
