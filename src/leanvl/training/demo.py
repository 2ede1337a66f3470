"""``leanvl demo``: the whole system on the built-in synthetic benchmark, on CPU, in minutes.

Steps (each timed and recorded in ``metrics.json``):

1. generate the synthetic temporal benchmark (:mod:`leanvl.data.synth`) unless it is cached;
2. train ``allinone_tiny`` with the ``pretrain`` recipe — VTC + ITM (with time-reversed clips as
   part of the ITM negatives) + MLM — co-trained with open-ended QA, so that one model serves
   retrieval, matching, multiple choice and QA;
3. evaluate text<->video retrieval (VTC, and ITM re-ranking of the top k), QA (per question type)
   and multiple choice on the test split, each with ordered and with shuffled frames;
4. train the same recipe with temporal token rolling switched off (the ablation) and evaluate it
   the same way;
5. write ``metrics.json``, ``report.md``, PNG plots and ``model/`` (a leanvl checkpoint folder),
   plus the resolved recipes under ``configs/`` to re-run any stage with ``leanvl train``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from rich.console import Console

from leanvl.checkpoint import atomic_write_text
from leanvl.data.synth import GENERATOR_VERSION, SynthConfig, generate
from leanvl.training.config import load_train_config
from leanvl.training.report import write_plots, write_report
from leanvl.training.runner import evaluate, train

__all__ = ["DemoPlan", "evaluate_all", "plan", "recipe", "run_demo"]


@dataclass
class DemoPlan:
    """Sizes of one demo flavour (full or ``--quick``).

    Attributes:
        synth: the synthetic benchmark to generate.
        steps: training steps of the main model (and of the ablation).
        batch_size: clips per step.
        lr: peak learning rate.
        model: ``allinone_tiny`` config overrides.
        num_frames: frames per clip.
        rerank_k: ITM re-ranking depth of the retrieval evaluation (0 = off).
        itm_weight: weight of the ITM loss (0 = no ITM pass: faster steps).
        mlm_weight: weight of the MLM loss.
        mc_head: how multiple choice is scored (``vtc`` or ``rank``, see ``TaskConfig``).
        ablation_steps: training steps of the rolling-off ablation (None = ``steps``; the quick
            demo trains it shorter, so its ablation only shows that the pipeline runs).
    """

    synth: SynthConfig
    steps: int
    batch_size: int
    lr: float
    model: dict[str, Any] = field(default_factory=dict)
    num_frames: int = 3
    rerank_k: int = 0
    itm_weight: float = 0.0
    mlm_weight: float = 0.0
    mc_head: str = "vtc"
    ablation_steps: int | None = None


def plan(quick: bool) -> DemoPlan:
    """The demo's sizes: the full run fits 15 minutes on 2 CPU cores, ``quick`` 3 minutes."""
    model = {
        "hidden_size": 64,
        "depth": 3,
        "num_heads": 2,
        "vtc_dim": 64,
        "drop_rate": 0.0,
        "drop_path_rate": 0.0,
        # Measured on the full demo: with the official layout (pooler on the text [CLS] alone,
        # open-ended head with dropout 0.5, lr 2e-3) QA stayed at the blind baseline (0.31);
        # a direct path from the visual tokens to the heads and the VQAv2 head reached 0.37.
        "qa_head": "vqav2",
        "fusion_pool": "text_cls+video",
        # VTC-only, 600 steps: mean-pooled embeddings reach t2v R@1 0.08 vs 0.025 for [CLS].
        "vtc_pool": "mean",
    }
    if quick:
        return DemoPlan(
            SynthConfig(train=400, val=0, test=100),
            steps=330,
            ablation_steps=170,
            batch_size=32,
            lr=1e-3,
            model=model,
        )
    # 8 px patches (an 8x8 grid; objects are about 13 px across): measured with the same 1000
    # steps (benchmarks/demo_longer_schedule.py --model patch_size=8, 2026-12-04), t2v R@1 0.275
    # vs 0.145 and R@5 0.745 vs 0.445 with 16 px patches, QA 0.396 vs 0.404, MC 0.505 vs 0.485,
    # for about 20% more time per step. (lr 3e-3 instead of 1e-3 gave R@1 0.130, QA 0.405.)
    model = {**model, "patch_size": 8}
    return DemoPlan(SynthConfig(), steps=1000, batch_size=32, lr=1e-3, model=model)


def default_data_dir(quick: bool) -> Path:
    """Where the demo keeps its benchmark: ``$LEANVL_CACHE`` or ``~/.cache/leanvl``."""
    root = Path(os.environ.get("LEANVL_CACHE", Path.home() / ".cache" / "leanvl"))
    return root / f"synth-{'quick' if quick else 'full'}-v{GENERATOR_VERSION}"


def recipe(p: DemoPlan, data: Path, run_dir: Path, roll: bool) -> dict[str, Any]:
    """The ``leanvl train`` recipe of one demo model (``roll``: temporal rolling on/off)."""
    steps = p.steps if roll or p.ablation_steps is None else p.ablation_steps
    return {
        "task": {
            "name": "pretrain",
            "vtc_weight": 1.0,
            "itm_weight": p.itm_weight,
            "mlm_weight": p.mlm_weight,
            "itm_reversed": 0.5,
            "qa_weight": 1.0,
            "mc_head": p.mc_head,
        },
        "data": {
            "root": str(data),
            "train_file": "annotations/ret_train.json",
            "test_file": "annotations/ret_test.json",
            "answers_file": "annotations/qa_answers.json",
            "qa_train_file": "annotations/qa_train.json",
            "num_frames": p.num_frames,
            "image_size": 64,
            "batch_size": p.batch_size,
            "eval_batch_size": 100,
            "num_workers": 1,
            "cache": True,
            "cache_frames": 8,
            "max_text_len": 32,
        },
        "model": {"name": "allinone_tiny", "overrides": {**p.model, "temporal_roll": roll}},
        "optim": {"lr": p.lr, "warmup": 0.1, "weight_decay": 0.01},
        "trainer": {
            "max_steps": steps,
            "num_threads": 2,
            "progress": "rich",
            "log_every_n_steps": 10,
            "checkpoint_every_n_steps": max(100, steps // 2),
        },
        "eval": {"at_end": False, "rerank_k": p.rerank_k},
        "run_dir": str(run_dir),
        "resume": "never",
    }


def _eval_recipe(base: dict[str, Any], task: str, test_file: str, shuffle: bool, out: Path):
    r = deepcopy(base)
    r["task"] = {"name": task, "mc_head": base["task"]["mc_head"]}
    r["data"]["test_file"] = test_file
    r["eval"] = {
        "at_end": False,
        "shuffle_frames": shuffle,
        "out": str(out),
        "rerank_k": base["eval"]["rerank_k"] if task == "pretrain" else 0,
    }
    r["ckpt"] = str(Path(base["run_dir"]) / "model")
    return r


def evaluate_all(base: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Retrieval, QA and MC metrics of the model in ``base``'s run, ordered and shuffled."""
    out: dict[str, Any] = {}
    specs = {
        "retrieval": ("pretrain", "annotations/ret_test.json"),
        "qa": ("qa", "annotations/qa_test.json"),
        "mc": ("mc", "annotations/mc_test.jsonl"),
    }
    for name, (task, file) in specs.items():
        for shuffle in (False, True):
            tag = f"{name}{'_shuffled' if shuffle else ''}"
            cfg = load_train_config(_eval_recipe(base, task, file, shuffle, folder / f"{tag}.json"))
            out[tag] = evaluate(cfg)
    return out


def _chance(data: Path, retrieval: dict[str, Any]) -> dict[str, Any]:
    meta = json.loads((data / "meta.json").read_text())["chance"]
    qa = meta["qa"]
    return {
        "t2v_r1": 1.0 / retrieval["n_videos"],
        "t2v_r5": min(1.0, 5.0 / retrieval["n_videos"]),
        "v2t_r1": 1.0 / retrieval["n_videos"],
        "qa": qa["all"]["majority_accuracy"],
        "qa_by_type": {t: qa[t]["majority_accuracy"] for t in ("static", "temporal")},
        "qa_note": "always the most frequent training answer",
        "qa_blind": qa["all"]["per_kind_majority_accuracy"],
        "qa_blind_by_type": {
            t: qa[t]["per_kind_majority_accuracy"] for t in ("static", "temporal")
        },
        "qa_blind_note": "the most frequent training answer of each question kind (a model that "
        "reads the question but not the video)",
        "mc": 1.0 / 5,
    }


def _summary(main: dict[str, Any], ablation: dict[str, Any], chance, seconds, timing, plan_):
    r, qa, qas, mc = main["retrieval"], main["qa"], main["qa_shuffled"], main["mc"]
    return {
        "retrieval": {**r, "shuffled": main["retrieval_shuffled"]},
        "qa": {
            **qa,
            "temporal_shuffled": qas["by_type"].get("temporal"),
            "static_shuffled": qas["by_type"].get("static"),
            "shuffled": qas,
        },
        "mc": {**mc, "shuffled": main["mc_shuffled"]},
        "ablation": {
            "no_roll": {
                "qa": ablation["qa"],
                "qa_shuffled": ablation["qa_shuffled"],
                "retrieval": ablation["retrieval"],
                "mc": ablation["mc"],
            }
        },
        "chance": chance,
        "seconds": seconds,
        "timing": timing,
        "plan": {
            "steps": plan_.steps,
            "ablation_steps": plan_.ablation_steps or plan_.steps,
            "batch_size": plan_.batch_size,
            "lr": plan_.lr,
            "num_frames": plan_.num_frames,
            "model": plan_.model,
            "synth": plan_.synth.parameters(),
        },
    }


def run_demo(
    out: str | Path, quick: bool = False, data: str | Path | None = None
) -> dict[str, Any]:
    """Run the demo into ``out`` and return the content of ``out/metrics.json``."""
    start = time.perf_counter()
    console = Console(stderr=True)
    # Lightning's banner lines (accelerator, tips) would repeat for each of the 14 stages.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    p = plan(quick)
    timing: dict[str, float] = {}

    console.rule(f"leanvl demo{' --quick' if quick else ''}: synthetic benchmark")
    t = time.perf_counter()
    data_dir = generate(Path(data) if data else default_data_dir(quick), p.synth)
    timing["synth"] = time.perf_counter() - t

    runs, results, evals = {}, {}, {}
    for name, roll in (("main", True), ("no_roll", False)):
        run = recipe(p, data_dir, out / "runs" / name, roll)
        runs[name] = run
        cfg = load_train_config(run)
        (out / "configs").mkdir(exist_ok=True)
        atomic_write_text(
            out / "configs" / f"{name}.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg))
        )
        steps = cfg.trainer.max_steps
        console.rule(f"train {name} (temporal roll {'on' if roll else 'off'}, {steps} steps)")
        t = time.perf_counter()
        results[name] = train(cfg)
        timing[f"train_{name}"] = time.perf_counter() - t
        console.rule(f"evaluate {name}: retrieval, QA, MC; ordered and shuffled frames")
        t = time.perf_counter()
        evals[name] = evaluate_all(run, out / "runs" / name / "eval")
        timing[f"eval_{name}"] = time.perf_counter() - t

    model_dir = out / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(out / "runs" / "main" / "model", model_dir)
    chance = _chance(data_dir, evals["main"]["retrieval"])
    seconds = time.perf_counter() - start
    metrics = _summary(evals["main"], evals["no_roll"], chance, seconds, timing, p)
    metrics["losses"] = {name: r["losses"] for name, r in results.items()}
    t = time.perf_counter()
    plots = write_plots(out, metrics)
    write_report(out, metrics, plots, quick=quick, data_dir=data_dir)
    metrics["seconds"] = time.perf_counter() - start
    metrics["timing"]["report"] = time.perf_counter() - t
    losses = metrics.pop("losses")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    atomic_write_text(out / "losses.json", json.dumps(losses) + "\n")
    return metrics
