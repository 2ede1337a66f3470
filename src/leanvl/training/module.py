"""The LightningModule of every recipe: a leanvl model, a task, AdamW and the LR schedule.

Reproducibility: before every training batch the global torch RNG is re-seeded from
``(trainer.seed, global_step)``, and the data sampler is step-indexed
(:class:`leanvl.training.data.StepSampler`), so dropout, ITM negatives and MLM masks of step k
are the same whether or not the run was interrupted and resumed before k.

Non-finite losses and gradients (``trainer.nonfinite``): with ``stop`` the run ends with a
:class:`FloatingPointError` naming the step and the loss terms; with ``skip`` the step's update
is dropped (no backward pass for a non-finite loss; the gradients are discarded before the
optimiser for a non-finite gradient, so AdamW leaves the weights and its moments untouched),
counted in ``nonfinite_skips`` (saved in the Lightning checkpoint, logged as
``train/nonfinite_skips``), and more than ``trainer.max_nonfinite_skips`` stop the run. Weights
are checked before every save (:func:`check_finite`), so NaN weights are never written.

Evaluation (validation and test loops) collects one row per item on every process, gathers the
rows from all processes and drops the duplicates that the sharded sampler padded in
(:func:`gather_rows`); every process then computes the same metrics.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from leanvl.training.config import TrainConfig
from leanvl.training.data import EvalData, sample_seed
from leanvl.training.tasks import Task

__all__ = ["VideoTextModule", "check_finite", "gather_rows", "lr_lambda", "param_groups"]

_NO_DECAY = ("bias", "LayerNorm.", "norm.", "norm1.", "norm2.")


def check_finite(model: nn.Module, what: str) -> None:
    """Raise FloatingPointError naming the tensors of ``model`` that hold NaN / inf.

    Reads the parameters and buffers themselves, not ``state_dict()``: a model may compute its
    state dict (Video-Panda with LoRA merges its adapters there, a full copy of every adapted
    weight), and the live tensors are what a non-finite update has touched.

    Args:
        model: the model about to be saved.
        what: what was about to happen (for the message), e.g. ``"checkpoint at step 7"``.
    """
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    bad = [n for n, t in tensors if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise FloatingPointError(
            f"refusing to save {what}: non-finite weights in {bad[:8]}"
            + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        )


def _terms_text(terms: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in terms.items())


def param_groups(model: nn.Module, cfg) -> list[dict[str, Any]]:
    """AdamW groups as All-in-one builds them: no weight decay on biases and norms; heads
    named in ``cfg.head_names`` get ``lr * lr_mult``."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not any(k in name for k in _NO_DECAY)
        head = any(k in name for k in cfg.head_names)
        groups.setdefault((decay, head), []).append(p)
    return [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "lr": cfg.lr * (cfg.lr_mult if head else 1.0),
        }
        for (decay, head), params in sorted(groups.items())
    ]


def lr_lambda(step: int, total: int, warmup: float, end_ratio: float, power: float) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up over ``warmup`` steps (a fraction
    of ``total`` when < 1), then polynomial decay to ``end_ratio``."""
    w = int(round(warmup * total)) if warmup < 1 else int(warmup)
    if step < w:
        return (step + 1) / w
    if total <= w:
        return 1.0
    frac = min(1.0, (step - w) / (total - w))
    return (1 - frac) ** power * (1 - end_ratio) + end_ratio


def gather_rows(
    module: L.LightningModule | None, rows: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rows of every process, ordered by ``index``, each index kept once.

    Args:
        module: the LightningModule (its ``all_gather`` crosses processes); None = one process.
        rows: tensors whose first dimension is the item; ``rows["index"]`` is the dataset index.
            Every process must hold the same number of rows (the evaluation sampler pads).
    """
    world = module.trainer.world_size if module is not None and module._trainer else 1
    if world > 1:
        rows = {k: module.all_gather(v).flatten(0, 1) for k, v in rows.items()}
    index = rows["index"].long()
    order = torch.argsort(index, stable=True)
    sorted_index = index[order]
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    pick = order[keep]
    return {k: v[pick] for k, v in rows.items()}


class VideoTextModule(L.LightningModule):
    """Trains and evaluates ``model`` on ``task``.

    Args:
        config: the full recipe.
        model: a leanvl model (e.g. :class:`leanvl.models.allinone.AllInOne`).
        task: the task object (:func:`leanvl.training.tasks.build_task`).
        eval_info: per split (``val``/``test``), the targets of the evaluation set.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        task: Task,
        eval_info: dict[str, EvalData],
        aux_qa: Task | None = None,
    ):
        super().__init__()
        self.cfg, self.model, self.task, self.eval_info = config, model, task, eval_info
        self.aux_qa = aux_qa
        self.task.cfg_rerank = config.eval.rerank_k
        self.task.shuffle_rerank = config.eval.shuffle_frames
        self._rows: dict[int, list[dict[str, torch.Tensor]]] = {}
        self.eval_results: dict[str, Any] | None = None
        self.loss_history: list[tuple[int, float]] = []
        self._micro, self._micro_step = 0, -1
        self.nonfinite_skips = 0

    # ---------------------------------------------------------------------------- training
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed dropout / negatives / masks from the step (and the micro-batch within it under
        gradient accumulation), so a resumed run repeats them exactly."""
        step = self.global_step
        self._micro = self._micro + 1 if step == self._micro_step else 0
        self._micro_step = step
        torch.manual_seed(sample_seed(self.cfg.trainer.seed, 10**12 + step * 1000 + self._micro))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Sum of the task's weighted losses; each term is logged as ``train/<name>``."""
        if "main" in batch:  # QA co-training: {"main": ..., "qa": ...}
            terms = self.task.losses(self.model, batch["main"])
            qa = self.aux_qa.losses(self.model, batch["qa"])["qa"]
            terms["qa"] = self.cfg.task.qa_weight * qa
            batch = batch["main"]
        else:
            terms = self.task.losses(self.model, batch)
        loss = torch.stack(list(terms.values())).sum()
        bs = batch["index"].shape[0]
        value = float(loss.detach())
        if not math.isfinite(value):
            values = {"loss": value, **{k: float(v.detach()) for k, v in terms.items()}}
            self._nonfinite(f"training loss ({_terms_text(values)})")
            return None  # skip: Lightning runs no backward pass and AdamW changes nothing
        for name, term in terms.items():
            self.log(f"train/{name}", term.detach(), batch_size=bs)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs)
        self.loss_history.append((self.global_step, value))
        return loss

    def _nonfinite(self, what: str) -> None:
        """Apply ``trainer.nonfinite`` to a non-finite ``what`` at the current step: raise
        (stop, or too many skips) or count the skip."""
        t = self.cfg.trainer
        step = self.global_step
        if t.nonfinite == "stop":
            raise FloatingPointError(
                f"non-finite {what} at step {step} (trainer.nonfinite=stop); the weights of "
                f"step {step} were not updated and nothing after step {step - 1} was saved"
            )
        self.nonfinite_skips += 1
        if self.nonfinite_skips > t.max_nonfinite_skips:
            raise FloatingPointError(
                f"non-finite {what} at step {step}: {self.nonfinite_skips} skipped steps, more "
                f"than trainer.max_nonfinite_skips={t.max_nonfinite_skips} (trainer.nonfinite=skip)"
            )
        rank_zero_warn(
            f"non-finite {what} at step {step}: update skipped "
            f"({self.nonfinite_skips}/{t.max_nonfinite_skips} allowed)"
        )
        self.log("train/nonfinite_skips", float(self.nonfinite_skips), batch_size=1)

    def on_before_optimizer_step(self, optimizer) -> None:
        """A non-finite gradient (with a finite loss) stops the run or drops the update."""
        bad = [
            n
            for n, p in self.model.named_parameters()
            if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        if not bad:
            return
        self._nonfinite(f"gradient of {bad[:4]}{' ...' if len(bad) > 4 else ''}")
        for p in self.model.parameters():  # skip: AdamW ignores parameters without gradient
            p.grad = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to save non-finite weights; store the non-finite skip count."""
        check_finite(self.model, f"a checkpoint at step {self.global_step}")
        checkpoint["leanvl"] = {"nonfinite_skips": self.nonfinite_skips}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the non-finite skip count of a resumed run."""
        self.nonfinite_skips = int(checkpoint.get("leanvl", {}).get("nonfinite_skips", 0))

    def configure_optimizers(self):
        """AdamW (All-in-one's betas/eps/decay groups) with warm-up + polynomial decay."""
        o = self.cfg.optim
        opt = torch.optim.AdamW(
            param_groups(self.model, o), lr=o.lr, betas=tuple(o.betas), eps=o.eps
        )
        total = self.cfg.trainer.max_steps
        ratio = o.end_lr / o.lr if o.lr else 0.0
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: lr_lambda(s, total, o.warmup, ratio, o.decay_power)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch, batch_idx, dataloader_idx=0):
        # Models with random patch order (All-in-one's official mode) draw from the global RNG:
        # seed it from the batch so an evaluation is repeatable.
        first = int(batch["index"][0]) if len(batch["index"]) else 0
        torch.manual_seed(sample_seed(self.cfg.trainer.seed, 2**40 + 1000 * first + dataloader_idx))
        rows = self.task.eval_rows(self.model, batch, dataloader_idx, self.cfg.eval.shuffle_frames)
        self._rows.setdefault(dataloader_idx, []).append({k: v.detach() for k, v in rows.items()})

    def _eval_end(self, split: str, prefix: str) -> None:
        rows = []
        for i in sorted(self._rows):
            parts = self._rows[i]
            local = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            rows.append(gather_rows(self, local))
        self._rows = {}
        with torch.no_grad():
            metrics = self.task.metrics(self.model, rows, self.eval_info[split])
        self.eval_results = metrics
        for key, value in _flat(metrics).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.log(f"{prefix}/{key}", float(value), sync_dist=False, rank_zero_only=True)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        """Collect evaluation rows of the validation set."""
        self._eval_step(batch, batch_idx, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        """Collect evaluation rows of the test set."""
        self._eval_step(batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        """Metrics of the validation set (logged as ``val/...``)."""
        if self._rows:
            self._eval_end("val", "val")

    def on_test_epoch_end(self) -> None:
        """Metrics of the evaluated split (kept in ``eval_results``)."""
        self._eval_end(self.cfg.eval.split, "test")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
