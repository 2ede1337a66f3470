"""``leanvl train``, ``leanvl eval`` and ``leanvl demo``: the training engine's commands.

Lightning and the training package are imported inside the commands, so ``leanvl --help``
stays fast. Exit codes: 0 ok, 1 failure, 2 usage / configuration error.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from leanvl.cli.app import app, fail

_console = Console(stderr=True)


def _fail(message: str, code: int) -> None:
    fail(_console, message, code)


def _run(fn, *args):
    """Call ``fn(*args)``; the errors a run can meet on bad input (data, annotations,
    checkpoints, non-finite loss) end it with their message and exit code 1, no traceback."""
    from leanvl.video.errors import VideoDecodeError

    try:
        return fn(*args)
    except (ValueError, FileNotFoundError, FloatingPointError, VideoDecodeError) as exc:
        _fail(str(exc), 1)
    except RuntimeError as exc:
        # an error re-raised from a DataLoader worker arrives as a RuntimeError holding the
        # worker's traceback: keep its last line ("...VideoDecodeError: 'path': reason")
        text = str(exc)
        if "DataLoader worker" not in text:
            raise
        lines = [line for line in text.splitlines() if line.strip()]
        _fail(lines[-1] if lines else text, 1)


def _load(config: Path, overrides: list[str] | None):
    from leanvl.config import ConfigError
    from leanvl.training.config import load_train_config

    try:
        return load_train_config(config, overrides=list(overrides or []))
    except ConfigError as exc:
        _fail(str(exc), 2)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _metrics_table(title: str, metrics: dict) -> Table:
    table = Table("metric", "value", title=title)
    for key, value in _flat(metrics).items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    return table


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="Recipe YAML (see configs/)."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. optim.lr=3e-4."),
) -> None:
    """Train a recipe: leanvl train CONFIG key=value ... (overrides optional)."""
    cfg = _load(config, overrides)
    from leanvl.training.runner import train

    result = _run(train, cfg)
    out = Console()
    summary = Table("item", "value", title=f"leanvl train: {cfg.task.name}")
    summary.add_row("steps", str(result["steps"]))
    summary.add_row("time", f"{result['seconds']:.1f} s")
    if result["losses"]:
        summary.add_row(
            "loss (first -> last)", f"{result['losses'][0][1]:.4f} -> {result['final_loss']:.4f}"
        )
    skipped = sum(len(v) for v in (result.get("skipped_videos") or {}).values())
    if skipped:
        summary.add_row("unreadable videos skipped", str(skipped))
    if result.get("nonfinite_skips"):
        summary.add_row("non-finite steps skipped", str(result["nonfinite_skips"]))
    summary.add_row("model", result["model"])
    summary.add_row("logs", str(Path(cfg.run_dir) / "logs"))
    out.print(summary)
    if result["metrics"]:
        out.print(_metrics_table(f"{cfg.eval.split} metrics", result["metrics"]))


@app.command("eval")
def eval_command(
    config: Path = typer.Argument(..., help="Recipe YAML (see configs/)."),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides; ckpt=PATH names the weights (default run_dir/model)."
    ),
) -> None:
    """Evaluate a checkpoint and write a metrics JSON: leanvl eval CONFIG ckpt=PATH key=value ..."""
    cfg = _load(config, overrides)
    from leanvl.training.runner import evaluate, metrics_path

    metrics = _run(evaluate, cfg)
    Console().print(_metrics_table(f"{cfg.task.name} / {cfg.eval.split}", metrics))
    Console().print(f"metrics written to {metrics_path(cfg)}")


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Output folder."),
    quick: bool = typer.Option(False, "--quick", help="Small, fast version (about 3 minutes)."),
    data: Path = typer.Option(
        None, "--data", help="Synthetic benchmark folder (generated there when missing)."
    ),
) -> None:
    """The main job: synthetic benchmark -> train All-in-one tiny -> evaluate -> report."""
    from leanvl.training.demo import run_demo

    try:
        metrics = run_demo(out, quick=quick, data=data)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 1)
    Console().print(
        f"metrics: {out / 'metrics.json'}  report: {out / 'report.md'}  "
        f"model: {out / 'model'}  ({metrics['seconds']:.0f} s)"
    )
