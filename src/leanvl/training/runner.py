"""``leanvl train`` and ``leanvl eval``: build the model, data and Lightning trainer of a recipe
and run it.

Run folder (``run_dir``)::

    config.yaml            the resolved recipe
    model/                 leanvl checkpoint folder (what users load)
    checkpoints/last.ckpt  Lightning checkpoint (what ``resume=auto`` continues from)
    logs/                  metrics.csv and TensorBoard events
    metrics_<split>.json   evaluation results

Reliability (``docs/reliability.md``): the data are read and checked (``data.on_error``) before
the trainer starts; Lightning checkpoints are written atomically and read with the weights-only
unpickler (:class:`~leanvl.training.callbacks.SafeCheckpointIO`), the resume checkpoint is
checked before anything else happens, and ``resume=auto`` passes over a ``last.ckpt`` that is
truncated (not one that is unsafe) to the newest readable ``step<N>.ckpt``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn

from leanvl.checkpoint import WEIGHTS_NAME, atomic_write_text, load
from leanvl.config import config_to_dict
from leanvl.convert.safe_load import CheckpointReadError
from leanvl.registry import create_model
from leanvl.training.callbacks import ExportModel, SafeCheckpointIO, read_lightning_checkpoint
from leanvl.training.config import TrainConfig
from leanvl.training.data import VideoTextDataModule
from leanvl.training.families import hooks_for
from leanvl.training.module import VideoTextModule
from leanvl.training.tasks import Task, build_task

__all__ = ["build_model", "evaluate", "metrics_path", "train"]

log = logging.getLogger("leanvl.training")
_HEADS = ("vqa_classifier", "mc_vqa_classifier", "itm_score", "mlm_score", "txt_proj", "vid_proj")


def _model_overrides(cfg: TrainConfig, answers: list[str] | None) -> dict[str, Any]:
    over = dict(cfg.model.overrides)
    for key, value in (("image_size", cfg.data.image_size), ("num_frames", cfg.data.num_frames)):
        if key in over and over[key] != value:
            raise ValueError(f"model.overrides.{key}={over[key]} disagrees with data.{key}={value}")
        over[key] = value
    over.setdefault("max_text_len", cfg.data.max_text_len)
    if answers is not None:
        over["num_answers"] = len(answers)
    return over


def _load_matching(model: nn.Module, folder: Path) -> list[str]:
    """Load the tensors of ``folder`` whose name and shape match; return what stayed fresh.

    Only task heads may differ (e.g. a new answer vocabulary); anything else is an error.
    """
    state = load_file(str(folder / WEIGHTS_NAME))
    own = model.state_dict()
    fresh = [k for k in own if k not in state or state[k].shape != own[k].shape]
    bad = [k for k in fresh if not k.startswith(_HEADS)]
    if bad:
        raise ValueError(f"model.init='{folder}' does not fit model: {bad[:8]}")
    model.load_state_dict(
        {k: v for k, v in state.items() if k in own and k not in fresh}, strict=False
    )
    return fresh


def build_model(cfg: TrainConfig, answers: list[str] | None = None) -> nn.Module:
    """The preset ``model.name`` with the recipe's overrides, optionally initialised from the
    leanvl checkpoint folder ``model.init`` (matching tensors by name; re-initialised heads are
    logged)."""
    try:
        model = create_model(cfg.model.name, **_model_overrides(cfg, answers))
    except TypeError as exc:
        raise ValueError(f"model.overrides: {exc}") from exc
    if cfg.model.init:
        fresh = _load_matching(model, Path(cfg.model.init))
        if fresh:
            log.warning("model.init: freshly initialised (not in %s): %s", cfg.model.init, fresh)
    return model


def _datamodule(cfg: TrainConfig, hooks: ModuleType | None) -> L.LightningDataModule:
    if hooks is not None and hasattr(hooks, "build_datamodule"):
        return hooks.build_datamodule(cfg)
    return VideoTextDataModule(cfg)


def _model(cfg: TrainConfig, hooks: ModuleType | None, dm) -> nn.Module:
    if hooks is not None and hasattr(hooks, "build_model"):
        return hooks.build_model(cfg, dm)
    return build_model(cfg, dm.answers)


def _task(cfg: TrainConfig, hooks: ModuleType | None, dm) -> Task:
    if hooks is not None and hasattr(hooks, "build_task"):
        return hooks.build_task(cfg, dm)
    return build_task(cfg.task, dm.tokenizer, cfg.data.max_text_len)


def _extra(cfg: TrainConfig, answers: list[str] | None):
    def extra(trainer: L.Trainer | None) -> dict[str, Any]:
        out: dict[str, Any] = {"task": cfg.task.name, "recipe": config_to_dict(cfg)}
        if trainer is not None:
            out["step"] = trainer.global_step
        if answers is not None:
            out["answers"] = answers
        return out

    return extra


def _trainer(cfg: TrainConfig, callbacks: list[L.Callback], loggers=None, **kw) -> L.Trainer:
    t = cfg.trainer
    if t.progress == "rich":
        callbacks = [*callbacks, RichProgressBar(leave=True)]
    elif t.progress == "tqdm":
        callbacks = [*callbacks, TQDMProgressBar()]
    # Every head exists in the model but a task uses only some of them: DDP must allow
    # parameters without gradients.
    strategy = "ddp_find_unused_parameters_true" if t.strategy == "ddp" else t.strategy
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        callbacks=callbacks,
        logger=loggers if loggers is not None else False,
        enable_progress_bar=t.progress != "none",
        enable_model_summary=False,
        use_distributed_sampler=False,
        deterministic=t.deterministic,
        default_root_dir=cfg.run_dir,
        plugins=[SafeCheckpointIO()],
        **kw,
    )


def _setup_process(cfg: TrainConfig) -> None:
    if cfg.trainer.num_threads > 0:
        torch.set_num_threads(cfg.trainer.num_threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*resuming from a checkpoint that ended before the epoch.*")
    warnings.filterwarnings("ignore", ".*`max_epochs` was not set.*")
    warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")
    # trainer.nonfinite=skip returns None from training_step on purpose (and warns itself)
    warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)


def _resume_state(cfg: TrainConfig) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint to resume from and its content, read with the weights-only unpickler.

    ``resume=auto`` takes ``run_dir/checkpoints/last.ckpt``; if that one is truncated or
    corrupt (never if it is unsafe) the newest readable ``step<N>.ckpt`` is used instead, with
    a warning.

    Raises:
        UnsafeCheckpointError: the checkpoint would run code when unpickled (nothing ran).
        CheckpointReadError: an explicit ``resume=PATH`` cannot be read.
    """
    if cfg.resume == "never":
        return None, None
    if cfg.resume != "auto":
        path = Path(cfg.resume)
        return path, read_lightning_checkpoint(path)
    folder = Path(cfg.run_dir) / "checkpoints"
    for partial in folder.glob(".*.ckpt.*.tmp"):  # left by a process killed while saving
        log.warning("resume=auto: removing the partial checkpoint %s", partial)
        partial.unlink(missing_ok=True)
    last = folder / "last.ckpt"
    if not last.is_file():
        return None, None
    try:
        return last, read_lightning_checkpoint(last)
    except CheckpointReadError as err:
        problem = err
    steps = sorted(
        folder.glob("step*.ckpt"),
        key=lambda p: int(p.stem[4:]) if p.stem[4:].isdigit() else -1,
        reverse=True,
    )
    for path in steps:
        try:
            state = read_lightning_checkpoint(path)
        except CheckpointReadError:
            continue
        log.warning("resume=auto: %s; resuming from %s instead", problem, path)
        return path, state
    raise CheckpointReadError(
        last, f"{problem.reason}; no readable step<N>.ckpt beside it (resume=never starts over)"
    )


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train a recipe (resuming when ``resume`` says so), export ``run_dir/model`` and, with
    ``eval.at_end``, evaluate the test split.

    Returns:
        ``{"steps", "seconds", "final_loss", "losses": [(step, loss)...], "model": path,
        "metrics": {...} | None}``.
    """
    start = time.perf_counter()
    _setup_process(cfg)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    ckpt, state = _resume_state(cfg)  # a bad resume checkpoint fails before any heavy work
    atomic_write_text(run / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    hooks = hooks_for(cfg.model.name)
    dm = _datamodule(cfg, hooks)
    model = _model(cfg, hooks, dm)
    task = _task(cfg, hooks, dm)
    info = {}
    for split, name in (("val", cfg.data.val_file), ("test", cfg.data.test_file)):
        if name is not None:
            info[split] = dm.eval_split(split)[1]
    aux = None
    if cfg.task.qa_weight > 0:
        aux = build_task(replace(cfg.task, name="qa"), dm.tokenizer, cfg.data.max_text_len)
    module = VideoTextModule(cfg, model, task, info, aux)
    if isinstance(dm, VideoTextDataModule):
        dm.prepare_data()  # read and check every annotation file and video before the trainer
    if ckpt is not None:
        dm.start_batch = int(state["global_step"]) * cfg.trainer.accumulate_grad_batches
        del state
    t = cfg.trainer
    checkpoint = ModelCheckpoint(
        dirpath=run / "checkpoints",
        filename="step{step}",
        save_last=True,
        save_top_k=t.keep_checkpoints,
        monitor="step" if t.keep_checkpoints > 0 else None,
        mode="max",
        every_n_train_steps=max(1, min(t.checkpoint_every_n_steps, t.max_steps)),
        auto_insert_metric_name=False,
    )
    loggers = [CSVLogger(run, name="logs", version="")]
    try:
        loggers.append(TensorBoardLogger(run, name="logs", version="", default_hp_metric=False))
    except ModuleNotFoundError:
        log.warning("TensorBoard logging off: install tensorboard or tensorboardX")
    skipped = _skipped(dm)
    if cfg.data.on_error == "skip":
        count = sum(len(v) for v in skipped.values())
        for logger in loggers:
            logger.log_metrics({"data/skipped_videos": float(count)}, step=0)
    batches_per_val = t.val_every_n_steps * t.accumulate_grad_batches
    trainer = _trainer(
        cfg,
        [checkpoint, ExportModel(run / "model", _extra(cfg, dm.answers))],
        loggers,
        max_steps=t.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val or None,
        log_every_n_steps=t.log_every_n_steps,
        num_sanity_val_steps=0,
        val_check_interval=batches_per_val if (batches_per_val and cfg.data.val_file) else None,
        limit_val_batches=None if (batches_per_val and cfg.data.val_file) else 0,
        check_val_every_n_epoch=None,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
    result: dict[str, Any] = {
        "steps": trainer.global_step,
        "seconds": time.perf_counter() - start,
        "losses": module.loss_history,
        "final_loss": module.loss_history[-1][1] if module.loss_history else None,
        "model": str(run / "model"),
        "metrics": None,
        "skipped_videos": skipped,
        "nonfinite_skips": module.nonfinite_skips,
    }
    if cfg.eval.at_end and cfg.data.test_file:
        result["metrics"] = _run_eval(cfg, module, dm, trainer)
    return result


def _skipped(dm) -> dict[str, list[dict[str, str]]]:
    """The videos left out under ``data.on_error=skip``: annotation file -> [{path, reason}]."""
    found = getattr(dm, "skipped", {}) or {}
    return {k: [{"path": b.path, "reason": b.reason} for b in v] for k, v in found.items()}


def metrics_path(cfg: TrainConfig) -> Path:
    """Where an evaluation writes its JSON: ``eval.out``, else
    ``run_dir/metrics_<split>[_shuffled].json``."""
    if cfg.eval.out:
        return Path(cfg.eval.out)
    tag = "_shuffled" if cfg.eval.shuffle_frames else ""
    return Path(cfg.run_dir) / f"metrics_{cfg.eval.split}{tag}.json"


def _run_eval(cfg: TrainConfig, module: VideoTextModule, dm, trainer: L.Trainer | None = None):
    if trainer is None or trainer.world_size != cfg.trainer.devices * cfg.trainer.num_nodes:
        trainer = _trainer(cfg, [], None)
    module.eval_info[cfg.eval.split] = dm.eval_split(cfg.eval.split)[1]
    start = time.perf_counter()
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = module.eval_results
    report = {
        "task": cfg.task.name,
        "split": cfg.eval.split,
        "annotations": str(
            cfg.data.path(cfg.data.test_file if cfg.eval.split == "test" else cfg.data.val_file)
        ),
        "checkpoint": cfg.ckpt or str(Path(cfg.run_dir) / "model"),
        "shuffle_frames": cfg.eval.shuffle_frames,
        "num_frames": cfg.data.num_frames,
        "world_size": trainer.world_size,
        "seconds": time.perf_counter() - start,
        "metrics": metrics,
        "skipped_videos": _skipped(dm),
    }
    if trainer.is_global_zero:
        atomic_write_text(metrics_path(cfg), json.dumps(report, indent=2) + "\n")
    return metrics


def _load_weights(cfg: TrainConfig, dm, hooks: ModuleType | None) -> nn.Module:
    path = Path(cfg.ckpt or Path(cfg.run_dir) / "model")
    if path.is_dir():
        model = load(path)
        return model
    if path.suffix == ".ckpt" and path.is_file():
        model = _model(cfg, hooks, dm)
        state = read_lightning_checkpoint(path)["state_dict"]
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
        return model
    raise FileNotFoundError(f"ckpt='{path}': not a leanvl checkpoint folder or a Lightning .ckpt")


def evaluate(cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate ``ckpt`` on ``eval.split`` and write the metrics JSON; returns the metrics.

    Training annotations are not read (only the evaluated split and the answer vocabulary)."""
    _setup_process(cfg)
    cfg = replace(
        cfg,
        data=replace(cfg.data, train_file=None, qa_train_file=None),
        task=replace(cfg.task, qa_weight=0.0),
    )
    hooks = hooks_for(cfg.model.name)
    dm = _datamodule(cfg, hooks)
    model = _load_weights(cfg, dm, hooks)
    task = _task(cfg, hooks, dm)
    module = VideoTextModule(cfg, model, task, {})
    return _run_eval(cfg, module, dm)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
