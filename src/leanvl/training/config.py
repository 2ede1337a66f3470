"""Typed training recipes: one ``TrainConfig`` per YAML file in ``configs/``.

A recipe has sections ``task``, ``data``, ``model``, ``optim``, ``trainer`` and ``eval``; every
field below is documented and can be overridden on the command line
(``leanvl train configs/x.yaml optim.lr=3e-4 trainer.max_steps=200``). The optimiser and schedule
defaults are All-in-one's (``shared/specs/allinone.md`` §5): AdamW (0.9, 0.98), weight decay
0.01 except biases and norms, linear warm-up then linear decay to 0, ``lr_mult`` on the task heads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanvl.config import ConfigError, load_config, suggest

__all__ = [
    "TASKS",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TaskConfig",
    "TrainConfig",
    "TrainerConfig",
    "load_train_config",
]

TASKS = ("pretrain", "retrieval", "qa", "mc", "egomcq")


@dataclass
class TaskConfig:
    """What is trained and evaluated.

    Attributes:
        name: ``pretrain`` (VTC / ITM / MLM on captioned videos), ``retrieval`` (the same losses
            as a fine-tune, usually VTC + ITM), ``qa`` (open-ended QA as classification over
            the answer vocabulary) or ``mc`` (multiple choice: one correct caption out of K).
        vtc_weight: weight of the video-text contrastive loss (0 = off).
        itm_weight: weight of the video-text matching loss (0 = off).
        mlm_weight: weight of the masked-language-modelling loss (0 = off).
        temperature: VTC softmax temperature (0.05 in All-in-one).
        itm_reversed: share of ITM negatives made by playing the positive clip backwards
            (its frames in reverse order) instead of pairing the caption with another clip.
            A temporal hard negative: it only makes sense when captions describe events whose
            reversal changes them (the synthetic benchmark's do). 0 = All-in-one's recipe.
        mc_head: multiple-choice scorer: ``rank`` (the ITM "match" logit, works zero-shot),
            ``vtc`` (cosine similarity of the contrastive text and video embeddings, zero-shot;
            the video pass has no temporal rolling) or ``mc_vqa`` (the MC-VQA classifier, needs
            MC training data).
        qa_weight: ``pretrain``/``retrieval`` only: also train the QA head on
            ``data.qa_train_file`` in the same steps (co-training; one model then serves
            retrieval, matching and QA). 0 = off.
        contrastive_loss: ``infonce`` (the default of every model) or ``egonce`` (SViTT-Ego:
            clips whose narrations share a verb and a noun count as positives; pair it with
            ``data.sampler=scene`` for the scene-aware negatives).
    """

    name: str = "pretrain"
    vtc_weight: float = 1.0
    itm_weight: float = 1.0
    mlm_weight: float = 0.0
    temperature: float = 0.05
    itm_reversed: float = 0.0
    mc_head: str = "rank"
    qa_weight: float = 0.0
    contrastive_loss: str = "infonce"


@dataclass
class DataConfig:
    """Where the data is and how clips and texts are read.

    Annotation paths are relative to ``root`` unless absolute; video paths inside the
    annotations are relative to ``root / video_dir``.

    Attributes:
        root: dataset folder.
        video_dir: folder of the videos, relative to ``root``.
        train_file: training annotations (retrieval JSON for pretrain/retrieval, QA JSON for
            qa, MC jsonl for mc).
        val_file: validation annotations (optional; evaluated during training when set).
        test_file: test annotations (what ``leanvl eval`` reads with ``eval.split=test``).
        answers_file: QA answer vocabulary (JSON list, or an answer -> index mapping).
        qa_train_file: QA annotations co-trained with a retrieval task (``task.qa_weight``).
        num_frames: frames per clip T given to the model.
        image_size: frame side in pixels (must equal the model's ``image_size``).
        train_sample: frame sampling at training time (``rand``, ``middle``, ``uniform``).
        eval_sample: frame sampling at evaluation time.
        max_text_len: longest tokenised text (captions, questions, options), special tokens
            included.
        batch_size: training clips per process per step.
        eval_batch_size: clips (or texts) per evaluation batch.
        num_workers: DataLoader worker processes (0 = decode in the main process).
        cache: decode every clip once into a uint8 frame cache (``.npy`` per annotation file)
            and sample frames from it; the frames come from the same decoder either way.
        cache_dir: where the cache lives (default ``root/.leanvl_cache``).
        cache_frames: frames kept per clip in the cache (sampled uniformly over the clip);
            training samples ``num_frames`` of them.
        vocab: tokenizer vocabulary (a ``vocab.txt`` path or name); None = the default
            BERT-uncased vocabulary.
        on_error: what a video that cannot be read does: ``raise`` (stop with the file and
            the reason) or ``skip`` (leave it out, count it, log it, report it in the metrics).
        max_bad_fraction: with ``on_error=skip``, stop before training when more than this
            fraction of a split's videos cannot be read (the message lists them).
        decode_timeout: seconds one clip may take to decode (frame cache, up-front scan and
            on-demand decoding); a slower clip counts as unreadable (``timeout: ...``) and
            ``on_error`` applies. 0 = no limit.
        max_video_pixels: largest frame (``width * height``) accepted; a larger video counts as
            unreadable (``resolution ...``) without being decoded. Default 8K UHD; 0 = no limit.
        sampler: how training batches are drawn: ``random`` or ``scene`` (EgoNCE's
            scene-aware batches: clips of the same video placed in the same batch).
    """

    root: str = "???"
    video_dir: str = "videos"
    train_file: str | None = None
    val_file: str | None = None
    test_file: str | None = None
    answers_file: str | None = None
    qa_train_file: str | None = None
    num_frames: int = 3
    image_size: int = 64
    train_sample: str = "rand"
    eval_sample: str = "middle"
    max_text_len: int = 40
    batch_size: int = 32
    eval_batch_size: int = 64
    num_workers: int = 0
    cache: bool = True
    cache_dir: str | None = None
    cache_frames: int = 8
    vocab: str | None = None
    on_error: str = "raise"
    max_bad_fraction: float = 0.1
    decode_timeout: float = 60.0
    max_video_pixels: int = 7680 * 4320
    sampler: str = "random"

    def path(self, name: str | None) -> Path | None:
        """``name`` resolved against ``root`` (None stays None)."""
        if name is None:
            return None
        p = Path(name)
        return p if p.is_absolute() else Path(self.root) / p

    @property
    def videos(self) -> Path:
        """Folder the annotation ``video`` fields are relative to."""
        return Path(self.root) / self.video_dir


@dataclass
class ModelConfig:
    """The model to train.

    Attributes:
        name: registered preset (``leanvl models`` lists them), e.g. ``allinone_tiny``.
        init: a leanvl checkpoint folder to start from (e.g. the output of a pretraining run).
            Weights are loaded by name; tensors whose shape differs (a new answer vocabulary) or
            that are missing stay freshly initialised and are listed in the log.
        overrides: config fields of the preset to change, e.g. ``{temporal_roll: false}``.
    """

    name: str = "allinone_tiny"
    init: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and polynomial decay (All-in-one's ``set_schedule``).

    Attributes:
        lr: peak learning rate.
        weight_decay: decoupled weight decay (not applied to biases and norm weights).
        betas: AdamW betas.
        eps: AdamW epsilon.
        lr_mult: learning-rate multiplier of the task heads named in ``head_names``.
        head_names: parameter-name fragments that get ``lr * lr_mult``.
        warmup: warm-up length: a fraction of ``trainer.max_steps`` if < 1, else steps.
        end_lr: learning rate at the last step.
        decay_power: power of the polynomial decay (1 = linear).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    lr_mult: float = 1.0
    head_names: list[str] = field(default_factory=lambda: ["vqa_classifier"])
    warmup: float = 0.1
    end_lr: float = 0.0
    decay_power: float = 1.0


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` settings and run control.

    Attributes:
        max_steps: optimiser steps.
        accelerator: ``cpu``, ``gpu``, ``auto``...
        devices: processes / devices (``2`` with ``strategy=ddp`` runs two CPU processes).
        num_nodes: machines (SLURM / torchrun launches).
        strategy: ``auto``, ``ddp``, ``fsdp``, ``deepspeed_stage_2``... (Lightning strategies).
        precision: ``32-true``, ``bf16-mixed``, ``16-mixed``.
        accumulate_grad_batches: gradient accumulation.
        gradient_clip_val: clip the gradient norm (0 = off).
        seed: seed of everything (weights, sampling, dropout); a run is reproducible from it.
        num_threads: torch intra-op threads per process (0 = leave torch's default).
        log_every_n_steps: logging period.
        checkpoint_every_n_steps: Lightning checkpoint (for resuming) period; the last step
            is always saved (``checkpoints/last.ckpt``).
        keep_checkpoints: how many periodic ``checkpoints/step<N>.ckpt`` to keep besides
            ``last.ckpt`` (-1 = all).
        val_every_n_steps: evaluate ``data.val_file`` every n steps (0 = only never).
        progress: ``rich`` progress bars, ``tqdm``, or ``none``.
        deterministic: ask torch for deterministic algorithms.
        nonfinite: what a non-finite (NaN/inf) training loss or gradient does: ``stop`` (end the
            run with an error naming the step and the loss terms; the last good checkpoint
            stays) or ``skip`` (drop that step's update, count it, go on).
        max_nonfinite_skips: with ``nonfinite=skip``, stop after this many skipped steps.
    """

    max_steps: int = 1000
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float = 0.0
    seed: int = 0
    num_threads: int = 0
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 500
    keep_checkpoints: int = 1
    val_every_n_steps: int = 0
    progress: str = "rich"
    deterministic: bool = False
    nonfinite: str = "stop"
    max_nonfinite_skips: int = 10


@dataclass
class EvalConfig:
    """Evaluation settings (``leanvl eval`` and the end of ``leanvl train``).

    Attributes:
        split: ``test`` or ``val`` (which annotation file to read).
        shuffle_frames: permute the frame order of every clip (never the identity) before the
            model sees it: the temporal diagnostic. A model that uses time loses accuracy.
        rerank_k: retrieval: re-score each text's top-k videos with the ITM head (0 = off).
        out: metrics JSON path (default ``run_dir/metrics_<split>[_shuffled].json``).
        at_end: evaluate the test split when training finishes.
    """

    split: str = "test"
    shuffle_frames: bool = False
    rerank_k: int = 0
    out: str | None = None
    at_end: bool = True


@dataclass
class TrainConfig:
    """A complete training / evaluation recipe.

    Attributes:
        task: what to train (:class:`TaskConfig`).
        data: data location and loading (:class:`DataConfig`).
        model: preset, initial weights, config overrides (:class:`ModelConfig`).
        optim: optimiser and schedule (:class:`OptimConfig`).
        trainer: Lightning trainer and run control (:class:`TrainerConfig`).
        eval: evaluation (:class:`EvalConfig`).
        run_dir: output folder: ``model/`` (leanvl checkpoint folder), ``checkpoints/``
            (Lightning, for resuming), ``logs/`` (CSV, TensorBoard), metrics JSON files.
        resume: ``auto`` (continue from ``run_dir/checkpoints/last.ckpt`` when it exists),
            ``never``, or a path to a Lightning checkpoint.
        ckpt: the weights ``leanvl eval`` evaluates: a leanvl checkpoint folder or a Lightning
            ``.ckpt`` (default: ``run_dir/model``).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run_dir: str = "runs/default"
    resume: str = "auto"
    ckpt: str | None = None

    def validate(self) -> TrainConfig:
        """Check values that types cannot express; raise ConfigError naming the field."""

        def fail(key: str, value: Any, why: str) -> None:
            raise ConfigError(f"{key}={value!r}: {why}")

        if self.task.name not in TASKS:
            fail(
                "task.name",
                self.task.name,
                f"expected one of {TASKS}{suggest(self.task.name, TASKS)}",
            )
        if self.task.mc_head not in ("rank", "vtc", "mc_vqa"):
            fail("task.mc_head", self.task.mc_head, "expected 'rank', 'vtc' or 'mc_vqa'")
        if not 0.0 <= self.task.itm_reversed <= 1.0:
            fail("task.itm_reversed", self.task.itm_reversed, "must be in [0, 1]")
        if self.task.qa_weight > 0 and (
            self.task.name not in ("pretrain", "retrieval") or not self.data.qa_train_file
        ):
            fail(
                "task.qa_weight",
                self.task.qa_weight,
                "QA co-training needs task.name pretrain/retrieval and data.qa_train_file",
            )
        if self.task.contrastive_loss not in ("infonce", "egonce"):
            fail("task.contrastive_loss", self.task.contrastive_loss, "expected infonce or egonce")
        if self.data.sampler not in ("random", "scene"):
            fail("data.sampler", self.data.sampler, "expected 'random' or 'scene'")
        if self.data.on_error not in ("raise", "skip"):
            fail("data.on_error", self.data.on_error, "expected 'raise' or 'skip'")
        if self.data.decode_timeout < 0:
            fail("data.decode_timeout", self.data.decode_timeout, "must be >= 0 (0: no limit)")
        if self.data.max_video_pixels < 0:
            fail("data.max_video_pixels", self.data.max_video_pixels, "must be >= 0 (0: none)")
        if not 0.0 <= self.data.max_bad_fraction <= 1.0:
            fail("data.max_bad_fraction", self.data.max_bad_fraction, "must be in [0, 1]")
        if self.trainer.nonfinite not in ("stop", "skip"):
            fail("trainer.nonfinite", self.trainer.nonfinite, "expected 'stop' or 'skip'")
        if self.eval.split not in ("test", "val"):
            fail("eval.split", self.eval.split, "expected 'test' or 'val'")
        for key in ("num_frames", "batch_size", "eval_batch_size", "max_text_len", "image_size"):
            if getattr(self.data, key) < 1:
                fail(f"data.{key}", getattr(self.data, key), "must be >= 1")
        if self.data.cache and self.data.cache_frames < self.data.num_frames:
            fail(
                "data.cache_frames",
                self.data.cache_frames,
                f"must be >= data.num_frames={self.data.num_frames}",
            )
        if self.trainer.max_steps < 1:
            fail("trainer.max_steps", self.trainer.max_steps, "must be >= 1")
        if self.trainer.progress not in ("rich", "tqdm", "none"):
            fail("trainer.progress", self.trainer.progress, "expected rich, tqdm or none")
        if self.resume not in ("auto", "never") and not Path(self.resume).is_file():
            fail("resume", self.resume, "expected 'auto', 'never' or an existing checkpoint file")
        if self.optim.warmup < 0:
            fail("optim.warmup", self.optim.warmup, "must be >= 0")
        return self


def load_train_config(
    *sources: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Read a recipe: YAML files / mappings merged in order, then ``key=value`` overrides.

    Raises:
        ConfigError: unknown key (with the nearest valid one), wrong type, bad value.
    """
    return load_config(TrainConfig, *sources, overrides=list(overrides)).validate()
