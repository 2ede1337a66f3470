"""The demo's main model with a longer schedule: does more training reach the demo targets?

``leanvl demo`` trains ``allinone_tiny`` for 1000 steps (its 15-minute CPU budget covers that
model and the rolling-off ablation). This script trains the same recipe (``leanvl.training.demo``
``plan()`` and ``recipe()``, temporal rolling on) for ``STEPS`` steps and evaluates it the way
the demo does (retrieval, QA, multiple choice; ordered and shuffled frames), to tell a schedule
that is too short from a recipe that cannot learn a skill (docs/training.md). ``--lr`` and
``--model KEY=VALUE`` (model config overrides, e.g. ``patch_size=8``) try a variant of the
recipe at the same budget.

Usage::

    leanvl data synth DATA                  # the full demo benchmark (or reuse the demo's cache)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/demo_longer_schedule.py DATA OUT --steps 4000
    OMP_WAIT_POLICY=PASSIVE python benchmarks/demo_longer_schedule.py DATA OUT --steps 1000 \
        --lr 3e-3 --model patch_size=8
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import yaml  # noqa: E402

from leanvl.training import demo  # noqa: E402
from leanvl.training.config import load_train_config  # noqa: E402
from leanvl.training.runner import train  # noqa: E402


def main() -> None:
    """Train, evaluate, print and write ``OUT/summary.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the synthetic benchmark (full demo size)")
    parser.add_argument("out", type=Path, help="run folder")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument(
        "--model", action="append", default=[], metavar="KEY=VALUE", help="model override"
    )
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    plan = demo.plan(quick=False)
    plan.steps = args.steps
    plan.lr = args.lr if args.lr is not None else plan.lr
    for item in args.model:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--model {item!r}: expected KEY=VALUE")
        plan.model[key] = yaml.safe_load(value)
    recipe = demo.recipe(plan, args.data, args.out / "run", roll=True)
    recipe["trainer"]["progress"] = "none"
    start = time.perf_counter()
    train(load_train_config(recipe))
    train_s = time.perf_counter() - start
    ev = demo.evaluate_all(recipe, args.out / "eval")
    summary = {
        "steps": args.steps,
        "lr": plan.lr,
        "model": plan.model,
        "train_seconds": round(train_s, 1),
        "t2v_r1": ev["retrieval"]["t2v_r1"],
        "t2v_r5": ev["retrieval"]["t2v_r5"],
        "qa": ev["qa"]["accuracy"],
        "qa_by_type": ev["qa"]["by_type"],
        "qa_shuffled_by_type": ev["qa_shuffled"]["by_type"],
        "qa_by_kind": ev["qa"].get("by_kind"),
        "qa_shuffled_by_kind": ev["qa_shuffled"].get("by_kind"),
        "mc": ev["mc"]["accuracy"],
        "mc_shuffled": ev["mc_shuffled"]["accuracy"],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
