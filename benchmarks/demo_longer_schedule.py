"""The demo's main model with a longer schedule: does more training reach the demo targets?

``leanvl demo`` trains ``allinone_tiny`` for 1000 steps (its 15-minute CPU budget covers that
model and the rolling-off ablation). This script trains the same recipe (``leanvl.training.demo``
``plan()`` and ``_recipe()``, temporal rolling on) for ``STEPS`` steps and evaluates it the way
the demo does (retrieval, QA, multiple choice; ordered and shuffled frames), to tell a schedule
that is too short from a recipe that cannot learn a skill (docs/training.md).

Usage::

    leanvl data synth DATA                  # the full demo benchmark (or reuse the demo's cache)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/demo_longer_schedule.py DATA OUT --steps 4000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from leanvl.training import demo  # noqa: E402
from leanvl.training.config import load_train_config  # noqa: E402
from leanvl.training.runner import train  # noqa: E402


def main() -> None:
    """Train, evaluate, print and write ``OUT/summary.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the synthetic benchmark (full demo size)")
    parser.add_argument("out", type=Path, help="run folder")
    parser.add_argument("--steps", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    plan = demo.plan(quick=False)
    plan.steps = args.steps
    recipe = demo._recipe(plan, args.data, args.out / "run", roll=True)
    recipe["trainer"]["progress"] = "none"
    start = time.perf_counter()
    train(load_train_config(recipe))
    train_s = time.perf_counter() - start
    ev = demo._evaluate_all(recipe, args.out / "eval")
    summary = {
        "steps": args.steps,
        "train_seconds": round(train_s, 1),
        "t2v_r1": ev["retrieval"]["t2v_r1"],
        "t2v_r5": ev["retrieval"]["t2v_r5"],
        "qa": ev["qa"]["accuracy"],
        "qa_by_type": ev["qa"]["by_type"],
        "qa_shuffled_by_type": ev["qa_shuffled"]["by_type"],
        "mc": ev["mc"]["accuracy"],
        "mc_shuffled": ev["mc_shuffled"]["accuracy"],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
