"""SViTT's temporal sparse expansion: a multi-stage curriculum run stage by stage.

Li, Niu, Gupta et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers", CVPR 2023:
clip length and sparsity grow together (stage 1: 4 frames, token keep rate 0.7; stage 2:
8 frames, keep 0.6; spec ``svitt.md`` §7). Each stage starts from the previous stage's weights;
the per-layer relative-position tables are resampled along time with the official nearest
rule (:func:`leanvl.training.families.svitt.load_init`), everything else carries over 1:1.

A curriculum is one YAML file: an ordinary training recipe (the sections of
:class:`leanvl.training.config.TrainConfig`) plus a ``stages`` list; each stage has a ``name``
and any recipe sections to change for it (merged over the recipe)::

    stages:
      - {name: f4, data: {num_frames: 4}, model: {overrides: {token_keep_rate: 0.7}}}
      - {name: f8, data: {num_frames: 8}, model: {overrides: {token_keep_rate: 0.6}}}

Stage ``k`` runs in ``<run_dir>/<name>`` with ``model.init`` = the previous stage's ``model/``
(the first stage keeps the recipe's ``model.init``); every stage is trained and evaluated through
:func:`leanvl.training.runner.train`, and ``<run_dir>/stages.json`` collects the metrics of all
stages. A finished stage (its ``model/`` and metrics exist) is not trained again, so an
interrupted curriculum continues where it stopped.

Run: ``python -m leanvl.training.families.svitt_stages CONFIG [key=value ...]`` (overrides apply
to the recipe, before the stages' own changes).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from leanvl.checkpoint import atomic_write_text
from leanvl.config import ConfigError
from leanvl.training.config import load_train_config

__all__ = ["load_stages", "main", "run_stages"]


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_stages(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split a curriculum YAML into ``(recipe, stages)``.

    Raises:
        ConfigError: no ``stages`` list, a stage without a unique ``name``, or a stage that is
            not a mapping (the message names the file and the stage).
    """
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    stages = data.pop("stages", None)
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{path}: 'stages' must be a non-empty list of stage mappings")
    names = set()
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            raise ConfigError(f"{path}: stages[{i}] must be a mapping with a string 'name'")
        if stage["name"] in names or "/" in stage["name"]:
            raise ConfigError(f"{path}: stages[{i}].name={stage['name']!r} is repeated or has '/'")
        names.add(stage["name"])
    return data, stages


def run_stages(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Train and evaluate every stage of the curriculum ``path`` in order.

    Returns:
        ``{"stages": [{"name", "run_dir", "num_frames", "token_keep_rate", "init", "steps",
        "seconds", "final_loss", "metrics"}...]}`` (also written to ``<run_dir>/stages.json``).
    """
    from leanvl.training.runner import train

    recipe, stages = load_stages(path)
    base = load_train_config(recipe, overrides=list(overrides))
    root = Path(base.run_dir)
    previous: str | None = None
    report: list[dict[str, Any]] = []
    for stage in stages:
        change = {k: v for k, v in stage.items() if k != "name"}
        run_dir = root / stage["name"]
        stage_recipe = _merge(recipe, change)
        extra = [*overrides, f"run_dir={run_dir}"]
        if previous is not None:
            extra.append(f"model.init={previous}")
        cfg = load_train_config(stage_recipe, overrides=extra)
        metrics_file = run_dir / f"metrics_{cfg.eval.split}.json"
        done = (run_dir / "model" / "config.json").is_file() and metrics_file.is_file()
        if done:
            result = {"steps": None, "seconds": 0.0, "final_loss": None,
                      "metrics": json.loads(metrics_file.read_text())["metrics"]}  # fmt: skip
        else:
            result = train(cfg)
        report.append(
            {
                "name": stage["name"],
                "run_dir": str(run_dir),
                "num_frames": cfg.data.num_frames,
                "token_keep_rate": cfg.model.overrides.get("token_keep_rate"),
                "init": cfg.model.init,
                "steps": result["steps"],
                "seconds": result["seconds"],
                "final_loss": result["final_loss"],
                "metrics": result["metrics"],
                "reused": done,
            }
        )
        previous = str(run_dir / "model")
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / "stages.json", json.dumps({"stages": report}, indent=2) + "\n")
    return {"stages": report}


def main(argv: list[str] | None = None) -> int:
    """``python -m leanvl.training.families.svitt_stages CONFIG [key=value ...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    try:
        out = run_stages(args[0], args[1:])
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s in out["stages"]:
        m = s["metrics"] or {}
        keys = ("t2v_r1", "v2t_r1", "r_mean", "intra", "inter")
        shown = ", ".join(f"{k}={m[k]:.3f}" for k in keys if isinstance(m.get(k), float))
        print(f"{s['name']}: T={s['num_frames']} keep={s['token_keep_rate']} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
