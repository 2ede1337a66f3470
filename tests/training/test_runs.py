"""End-to-end runs on the tiny real-mp4 dataset: train, eval JSON, exact resume, DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import leanvl
from conftest import tiny_recipe
from leanvl.cli import main as cli_main
from leanvl.training.config import load_train_config
from leanvl.training.runner import evaluate, train


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_train_exports_model_and_eval_writes_metrics_json(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = train(load_train_config(tiny_recipe(tiny_data, run, "qa")))
    assert result["steps"] == 6
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "logs" / "metrics.csv").is_file()
    assert any((run / "logs").glob("events.out.tfevents.*"))
    model = leanvl.load(run / "model")
    assert model.config.num_answers == 6 and model.checkpoint_extra["task"] == "qa"
    assert model.checkpoint_extra["answers"] == ["blue", "green", "left", "red", "right", "yellow"]

    cfg_file = tmp_path / "qa.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_recipe(tiny_data, run, "qa")))
    out = tmp_path / "m.json"
    with pytest.raises(SystemExit) as exit_:
        cli_main(
            [
                "eval",
                str(cfg_file),
                f"ckpt={run / 'model'}",
                f"eval.out={out}",
                "eval.shuffle_frames=true",
            ]
        )
    assert exit_.value.code == 0
    report = json.loads(out.read_text())
    assert report["task"] == "qa" and report["shuffle_frames"] is True
    m = report["metrics"]
    assert m["n"] == 32 and m["n_out_of_vocab"] == 0
    assert set(m["by_type"]) == {"static", "temporal"}
    assert m["by_kind"] == {"color": m["by_type"]["static"], "direction": m["by_type"]["temporal"]}
    for key in ("accuracy", "accuracy_in_vocab"):
        assert 0.0 <= m[key] <= 1.0


def test_eval_from_lightning_ckpt_equals_eval_from_folder(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(load_train_config(tiny_recipe(tiny_data, run, "pretrain", eval={"rerank_k": 3})))
    base = tiny_recipe(tiny_data, run, "pretrain", eval={"rerank_k": 3})
    a = evaluate(load_train_config({**base, "ckpt": str(run / "model")}))
    b = evaluate(load_train_config({**base, "ckpt": str(run / "checkpoints" / "last.ckpt")}))
    assert a == b
    for key in (
        "t2v_r1",
        "t2v_r5",
        "t2v_r10",
        "t2v_medr",
        "t2v_meanr",
        "v2t_r1",
        "v2t_r5",
        "v2t_r10",
        "v2t_medr",
        "v2t_meanr",
    ):
        assert key in a
    assert a["n_videos"] == 16 and a["n_texts"] == 32
    assert a["itm_rerank"]["k"] == 3


def test_resume_continues_the_run_exactly(tiny_data, tmp_path):
    sections = {
        "task": {"mlm_weight": 0.5, "itm_reversed": 0.5},
        "trainer": {
            "max_steps": 6,
            "checkpoint_every_n_steps": 3,
            "keep_checkpoints": -1,
            "progress": "none",
            "num_threads": 1,
            "log_every_n_steps": 1,
        },
    }
    full = tmp_path / "full"
    train(load_train_config(tiny_recipe(tiny_data, full, **sections)))
    step3 = full / "checkpoints" / "step3.ckpt"
    assert step3.is_file()
    resumed = tmp_path / "resumed"
    train(load_train_config(tiny_recipe(tiny_data, resumed, **sections, resume=str(step3))))
    a, b = _weights(full / "model"), _weights(resumed / "model")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # resume=auto finds last.ckpt and has nothing left to do
    again = train(load_train_config(tiny_recipe(tiny_data, full, **sections, resume="auto")))
    assert again["steps"] == 6 and again["losses"] == []


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    exe = Path(sys.executable).with_name("leanvl")
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_ddp_two_cpu_processes_train_and_match_single_process_metrics(tiny_data, tmp_path):
    run = tmp_path / "ddp"
    recipe = tiny_recipe(
        tiny_data, run, "qa", trainer={"max_steps": 3, "progress": "none", "num_threads": 1}
    )
    cfg = tmp_path / "qa.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    proc = _cli(["train", str(cfg), "trainer.devices=2", "trainer.strategy=ddp"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "model" / "model.safetensors").is_file()
    outs = {}
    for devices in (1, 2):
        out = tmp_path / f"m{devices}.json"
        proc = _cli(
            [
                "eval",
                str(cfg),
                f"trainer.devices={devices}",
                "trainer.strategy=ddp",
                f"eval.out={out}",
            ],
            tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[devices] = json.loads(out.read_text())
    assert outs[2]["world_size"] == 2 and outs[1]["world_size"] == 1
    # 32 questions over 2 processes with eval batch 5: padded shards, duplicates dropped
    assert outs[2]["metrics"] == outs[1]["metrics"]
    assert outs[2]["metrics"]["n"] == 32
