"""Video-Panda recipes for ``leanvl train`` / ``leanvl eval`` (the ``videopanda*`` presets).

Video-Panda (Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free
Video-Language Models", CVPR 2025, arXiv 2412.18609) is trained in three stages (spec
``videopanda.md`` §5.1), each starting from the previous stage's weights (``model.init``):

==========  ==========================================  ===============================
stage       data                                        trained
==========  ==========================================  ===============================
align       video-caption conversations                 STAB + projector (+ distill head)
caption     video-caption conversations (pretraining)   everything
instruct    instruction / QA conversations              everything (or, with
                                                        ``lora_rank > 0``, STAB + projector
                                                        + LoRA adapters on the LLM)
==========  ==========================================  ===============================

All stages optimise next-token cross-entropy on the answer tokens only (the official
``preprocess_v1`` masking) plus, with ``distill_weight > 0``, the cosine distillation of the
LLM's frame-token hidden states against a frozen teacher's patch features (§5.3,
:mod:`leanvl.training.families.videopanda_distill`). Evaluation answers each question by
greedy generation (the ``videopanda_v1`` prompt, §4.5) and scores exact match, overall and per
question type.

The stage and the other Video-Panda settings live in ``model.overrides.videopanda``
(:class:`VideoPandaRecipe`); the remaining ``model.overrides`` are preset fields. When
``task.name`` is ``align`` / ``caption`` / ``instruct`` (should the engine accept those names),
it wins over ``model.overrides.videopanda.stage``.

Data: ``data.train_file`` / ``val_file`` / ``test_file`` are LLaVA conversation JSON, the
synthetic benchmark's QA JSON, or retrieval JSON (captions asked with
:data:`~leanvl.training.families.videopanda_text.CAPTION_PROMPT`). Frames come from the engine's
decoder and frame cache (``data.image_size`` square frames) and go through Video-Panda's
"anypixel" preprocessing (:func:`leanvl.video.transforms.videopanda_anypixel`); with the cache
the frames are centre-cropped squares (the letterbox path is exact with ``data.cache=false``).

LoRA (``lora_rank > 0``, instruct stage, peft as the optional extra ``leanvl[lora]``): the
LLM's weights stay frozen and adapters on the Linears of its decoder layers train
(:func:`apply_lora`); the exported folder holds the merged weights under the plain model's
keys, the Lightning checkpoint the unmerged adapters (exact resume).

Text: an LLM with an inline architecture (``videopanda_tiny``) gets a word-level tokenizer built
from ``vocab_from`` files; the tokenizer JSON is stored in the model config's ``extra``
(``config.json``), so the exported checkpoint answers questions by itself (``leanvl ask``).
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from leanvl.checkpoint import WEIGHTS_NAME, atomic_write_text, read_config
from leanvl.config import ConfigError, config_to_dict, load_config
from leanvl.registry import create_model
from leanvl.training.config import TrainConfig
from leanvl.training.data import EvalData, VideoTextDataModule, _unique_videos
from leanvl.training.families.videopanda_distill import (
    DistillationHead,
    TeacherConfig,
    attach_training_module,
    build_teacher,
    default_layers,
    distillation_loss,
    frame_token_positions,
)
from leanvl.training.families.videopanda_text import (
    CAPTION_PROMPT,
    build_word_tokenizer,
    encode_conversation,
    normalize_answer,
    read_conversations,
    texts_of_file,
    tokenizer_from_json,
)
from leanvl.training.tasks import Task, shuffle_frames
from leanvl.video.transforms import videopanda_anypixel

__all__ = [
    "STAGES",
    "ConversationDataset",
    "VideoPandaCollate",
    "VideoPandaDataModule",
    "VideoPandaRecipe",
    "VideoPandaTask",
    "apply_lora",
    "build_datamodule",
    "build_model",
    "build_task",
    "exact_match_metrics",
    "handles",
    "load_tokenizer_of",
    "lora_target_names",
    "recipe_of",
]

log = logging.getLogger("leanvl.training")
STAGES = ("align", "caption", "instruct")
_SECTION = "videopanda"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Default ``lora_target_modules``: every Linear of a Llama decoder layer."""
_LORA_ADAPTER = "default"
_LORA_INSTALL = "pip install 'leanvl[lora]'"


@dataclass
class VideoPandaRecipe:
    """Video-Panda settings of a recipe (``model.overrides.videopanda``).

    Attributes:
        stage: ``align`` (LLM frozen: STAB, projector and distillation head train),
            ``caption`` (video-caption pretraining, everything trains) or ``instruct``
            (instruction tuning, everything trains).
        train_llm: override the stage's choice of training the LLM (None = the stage's).
        distill_weight: weight of the distillation loss (official 1; 0 = off).
        distill_layers: LLM hidden-state indices read by the head, query layer first (None =
            ``[L, L - L//8, ..., 0]``, the released ``[32, 28, ..., 0]`` for 32 layers).
        distill_heads: attention heads of the head (over layers).
        teacher: the frozen teacher (:class:`TeacherConfig`).
        vocab_from: annotation files (relative to ``data.root``) whose texts build the
            word-level tokenizer; empty = the train/val/test files. Ignored when
            ``model.init`` carries a tokenizer (every stage must share it).
        caption_prompt: the question of caption samples.
        template: training conversation template (official ``vicuna_v1``).
        eval_template: generation template (official ``videopanda_v1``).
        max_new_tokens: generation length at evaluation.
        lora_rank: LoRA rank on the LLM (instruct stage only): 0 = the LLM trains fully (the
            released model); > 0 = the LLM's weights stay frozen and rank-``lora_rank``
            adapters (peft) on ``lora_target_modules`` train instead (see :func:`apply_lora`).
        lora_alpha: LoRA scale numerator (scale = alpha / rank); None = ``2 * lora_rank``, the
            ratio of LLaVA-1.5's ``finetune_lora.sh`` (r 128, alpha 256).
        lora_dropout: dropout on the adapters' input (LLaVA's 0.05).
        lora_target_modules: names of the ``nn.Linear`` modules of the LLM's decoder layers that
            get adapters (default: every one of a Llama layer, as LLaVA's
            ``find_all_linear_names``); the LM head, the embeddings, the STAB and the projector
            are never adapted.
    """

    stage: str = "instruct"
    train_llm: bool | None = None
    distill_weight: float = 1.0
    distill_layers: list[int] | None = None
    distill_heads: int = 8
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    vocab_from: list[str] = field(default_factory=list)
    caption_prompt: str = CAPTION_PROMPT
    template: str = "vicuna_v1"
    eval_template: str = "videopanda_v1"
    max_new_tokens: int = 8
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))


def handles(model_name: str) -> bool:
    """Video-Panda presets (``videopanda_tiny``, ``videopanda_7b``...)."""
    return model_name.startswith("videopanda")


def recipe_of(cfg: TrainConfig) -> VideoPandaRecipe:
    """The :class:`VideoPandaRecipe` of ``cfg`` (``model.overrides.videopanda``), checked.

    Raises:
        ConfigError: unknown key, bad type or value (named ``model.overrides.videopanda.*``).
    """
    raw = cfg.model.overrides.get(_SECTION) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"model.overrides.{_SECTION}={raw!r}: expected a mapping")
    try:
        recipe = load_config(VideoPandaRecipe, raw)
    except ConfigError as exc:
        raise ConfigError(f"model.overrides.{_SECTION}: {exc}") from exc
    if cfg.task.name in STAGES:
        recipe = replace(recipe, stage=cfg.task.name)

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"model.overrides.{_SECTION}.{key}={getattr(recipe, key)!r}: {why}")

    if recipe.stage not in STAGES:
        raise bad("stage", f"expected one of {STAGES}")
    if recipe.distill_weight < 0:
        raise bad("distill_weight", "must be >= 0")
    if recipe.max_new_tokens < 1:
        raise bad("max_new_tokens", "must be >= 1")
    _check_lora(recipe, bad)
    if recipe.stage == "align" and recipe.train_llm:
        raise bad("train_llm", "the align stage keeps the LLM frozen")
    return recipe


def _check_lora(recipe: VideoPandaRecipe, bad) -> None:
    if recipe.lora_rank < 0:
        raise bad("lora_rank", "must be >= 0 (0 = the LLM trains fully, > 0 = LoRA rank)")
    if recipe.lora_alpha is not None and not recipe.lora_alpha > 0:
        raise bad("lora_alpha", "must be > 0 (or null for 2 * lora_rank)")
    if not 0.0 <= recipe.lora_dropout < 1.0:
        raise bad("lora_dropout", "must be in [0, 1)")
    names = recipe.lora_target_modules
    if not names:
        raise bad("lora_target_modules", "must name at least one Linear of the decoder layers")
    odd = [n for n in names if not n or "." in n or n != n.strip()]
    if odd:
        raise bad(
            "lora_target_modules",
            f"{odd} are not module names (plain names such as 'q_proj', no paths)",
        )
    if len(set(names)) != len(names):
        raise bad("lora_target_modules", "lists a module twice")
    if not recipe.lora_rank:
        return
    if recipe.stage != "instruct":
        raise bad(
            "lora_rank",
            f"LoRA is for the instruct stage; the {recipe.stage} stage "
            + ("keeps the LLM frozen" if recipe.stage == "align" else "trains the LLM fully")
            + " (lora_rank: 0)",
        )
    if recipe.train_llm is not None:
        raise bad(
            "train_llm",
            f"leave it unset with lora_rank={recipe.lora_rank} (the LLM's weights stay frozen "
            "and its LoRA adapters train)",
        )


def _preset_overrides(cfg: TrainConfig) -> dict[str, Any]:
    over = {k: v for k, v in cfg.model.overrides.items() if k != _SECTION}
    for key, value in (("image_size", cfg.data.image_size), ("num_frames", cfg.data.num_frames)):
        if key in over and over[key] != value:
            raise ConfigError(
                f"model.overrides.{key}={over[key]} disagrees with data.{key}={value}"
            )
        over[key] = value
    return over


def load_tokenizer_of(config: Any) -> Any | None:
    """The word-level tokenizer stored in a Video-Panda config's ``extra`` (None if absent)."""
    text = (getattr(config, "extra", None) or {}).get("tokenizer")
    return tokenizer_from_json(text) if text else None


# -------------------------------------------------------------------------------- data
class ConversationDataset(Dataset):
    """Clip + conversation samples; ``__getitem__`` takes ``(index, seed)`` pairs.

    Args:
        clips: the engine's :class:`~leanvl.training.data.ClipFrames`.
        video_index: clip row of every sample.
        sample: frame sampling mode.
        samples: :func:`~leanvl.training.families.videopanda_text.read_conversations` dicts.
        train: training items (ids + labels of one conversation alternative drawn with the
            seed) or evaluation items (the first question, the accepted answers).
    """

    def __init__(self, clips, video_index, sample: str, samples: list[dict], train: bool):
        self.clips, self.video_index, self.sample = clips, list(video_index), sample
        self.samples, self.train = samples, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        s = self.samples[i]
        video = self.clips.get(self.video_index[i], self.sample, seed)
        if self.train:
            turns = s["turns"][random.Random(seed).randrange(len(s["turns"]))]
            return {"index": i, "video": video, "turns": turns}
        return {"index": i, "video": video, "turns": [(s["turns"][0][0][0], None)]}


class VideoPandaCollate:
    """Batch of conversation items: anypixel frames, right-padded ids, mask and labels.

    Produces ``index`` (B,), ``video`` uint8 (B, T, S, S, 3) (kept for frame shuffling),
    ``frames`` (B, T, 4, S, S), ``teacher_frames`` (B*T, 4, St, St) when ``teacher_size``,
    ``input_ids`` / ``attention_mask`` (B, N) and, for training items, ``labels``.
    """

    def __init__(
        self,
        tokenizer: Any,
        num_frames: int,
        image_size: int,
        patch_size: int,
        max_len: int,
        template: str,
        eval_template: str,
        teacher_size: int = 0,
        teacher_patch: int = 0,
    ) -> None:
        self.tokenizer, self.num_frames = tokenizer, num_frames
        self.image_size, self.patch_size, self.max_len = image_size, patch_size, max_len
        self.template, self.eval_template = template, eval_template
        self.teacher_size, self.teacher_patch = teacher_size, teacher_patch

    def frames(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (T, S, S, 3) -> float (T, 4, S, S) anypixel frames."""
        clip = video.permute(0, 3, 1, 2).contiguous()
        return videopanda_anypixel(
            clip,
            image_size=self.image_size,
            teacher_size=self.image_size // 2,
            patch=self.patch_size,
            num_frames=self.num_frames,
        )

    def teacher(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (T, S, S, 3) -> float (T, 4, St, St) teacher frames (unscaled geometry)."""
        clip = video.permute(0, 3, 1, 2).contiguous()
        return videopanda_anypixel(
            clip,
            image_size=self.teacher_size,
            teacher_size=self.teacher_size,
            patch=self.teacher_patch,
            num_frames=self.num_frames,
        )

    def encode(self, turns) -> tuple[list[int], list[int] | None]:
        """Ids (and labels for complete conversations) of one item."""
        if turns[-1][1] is None:
            from leanvl.models.videopanda import build_prompt, tokenize_prompt

            prompt = build_prompt(list(turns), self.eval_template, self.num_frames)
            return tokenize_prompt(prompt, self.tokenizer), None
        return encode_conversation(turns, self.tokenizer, self.num_frames, self.template)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        encoded = [self.encode(it["turns"]) for it in items]
        for it, (ids, _) in zip(items, encoded, strict=True):
            text = sum(1 for t in ids if t >= 0)
            if text > self.max_len:
                raise ValueError(
                    f"sample {it['index']}: {text} text tokens exceed data.max_text_len="
                    f"{self.max_len} (raise it; conversations are never truncated)"
                )
        length = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id or 0
        ids_t = torch.full((len(items), length), pad, dtype=torch.long)
        mask = torch.zeros(len(items), length, dtype=torch.long)
        labels = torch.full((len(items), length), -100, dtype=torch.long)
        for b, (ids, lab) in enumerate(encoded):
            ids_t[b, : len(ids)] = torch.tensor(ids)
            mask[b, : len(ids)] = 1
            if lab is not None:
                labels[b, : len(lab)] = torch.tensor(lab)
        video = torch.stack([it["video"] for it in items])
        batch = {
            "index": torch.tensor([it["index"] for it in items]),
            "video": video,
            "frames": torch.stack([self.frames(v) for v in video]),
            "input_ids": ids_t,
            "attention_mask": mask,
        }
        if encoded[0][1] is not None:
            batch["labels"] = labels
            if self.teacher_size:
                batch["teacher_frames"] = torch.cat([self.teacher(v) for v in video])
        return batch


class _Sample:
    """A conversation sample seen through the engine's ``record.video`` interface."""

    __slots__ = ("data", "video")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data, self.video = data, data["video"]


@dataclass
class QAEvalData(EvalData):
    """Evaluation targets of a generation split: accepted answers and questions."""

    answers: list[tuple[str, ...]] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    question_ids: list[str | None] = field(default_factory=list)


class VideoPandaDataModule(VideoTextDataModule):
    """Conversation loaders of a Video-Panda stage (engine frame cache, anypixel frames).

    Attributes:
        tokenizer: the word-level tokenizer (from ``model.init`` or built from ``vocab_from``),
            or the LLM's own tokenizer for ``llm_path`` models.
        recipe: the :class:`VideoPandaRecipe`.
        teacher: the frozen teacher (None without distillation).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.recipe = recipe_of(config)
        super().__init__(config)
        self.answers = None
        self.init_config = self._init_config()
        self.tokenizer = self._tokenizer()
        preset = create_model_config(config, self.init_config, self.tokenizer)
        self.model_config = preset
        self.teacher = None
        if self.recipe.distill_weight > 0 and config.data.train_file:
            self.teacher = build_teacher(
                self.recipe.teacher, preset.image_size // 2, preset.patch_size
            )

    def _init_config(self) -> dict[str, Any] | None:
        """Config of the weights this run starts from: ``model.init`` when training, the
        evaluated checkpoint folder (``ckpt`` or ``run_dir/model``) when there is no training
        file (``leanvl eval``), so the tokenizer is the checkpoint's own."""
        key, folder = "model.init", self.cfg.model.init
        if not self.cfg.data.train_file:
            ckpt = Path(self.cfg.ckpt or Path(self.cfg.run_dir) / "model")
            if (ckpt / "config.json").is_file():
                key, folder = "ckpt", str(ckpt)
        if not folder:
            return None
        meta = read_config(folder)
        if meta["family"] != "videopanda":
            raise ConfigError(f"{key}='{folder}' is a {meta['family']} checkpoint, not videopanda")
        return meta["config"]

    def _tokenizer(self) -> Any:
        if self.init_config is not None and (self.init_config.get("extra") or {}).get("tokenizer"):
            return tokenizer_from_json(self.init_config["extra"]["tokenizer"])
        d = self.cfg.data
        llm_path = (self.init_config or {}).get("llm_path") or self.cfg.model.overrides.get(
            "llm_path"
        )
        if llm_path:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(llm_path)
        names = self.recipe.vocab_from or [
            n for n in (d.train_file, d.val_file, d.test_file) if n is not None
        ]
        if not names:
            raise ConfigError(
                f"model.overrides.{_SECTION}.vocab_from: no files to build the tokenizer from"
            )
        texts = [self.recipe.caption_prompt]
        for name in names:
            texts += texts_of_file(d.path(name))
        return build_word_tokenizer(texts)

    def _records(self, split: str) -> list[dict]:
        path = self._file(split)
        if path is None:
            raise ValueError(f"data.{split}_file is not set")
        return read_conversations(path, self.recipe.caption_prompt)

    def _build(self, split: str | None) -> None:
        if split is None or split in self._splits or (split == "train" and self._train):
            return
        source = f"data.{split}_file '{self._file(split)}'"
        records, make_clips = self._readable(source, [_Sample(s) for s in self._records(split)])
        samples = [r.data for r in records]
        train = split == "train"
        sample = self.cfg.data.train_sample if train else self.cfg.data.eval_sample
        videos, vidx = _unique_videos([s["video"] for s in samples])
        ds = ConversationDataset(make_clips(videos), vidx, sample, samples, train)
        if train:
            self._train = ds
            return
        info = QAEvalData(
            types=[s["type"] for s in samples],
            answers=[s["answers"] for s in samples],
            questions=[s["turns"][0][0][0] for s in samples],
            question_ids=[s["question_id"] for s in samples],
        )
        self._splits[split] = ([ds], info)

    def collate(self) -> VideoPandaCollate:
        """The batch builder of this recipe."""
        mc = self.model_config
        teacher = self.teacher
        return VideoPandaCollate(
            self.tokenizer,
            mc.num_frames,
            mc.image_size,
            mc.patch_size,
            self.cfg.data.max_text_len,
            self.recipe.template,
            self.recipe.eval_template,
            teacher.image_size if teacher is not None else 0,
            teacher.patch_size if teacher is not None else 0,
        )

    def _loader(self, ds, sampler, batch_size):
        workers = self.cfg.data.num_workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=self.collate(),
            multiprocessing_context="fork" if workers and os.name == "posix" else None,
        )


def create_model_config(cfg: TrainConfig, init: dict[str, Any] | None, tokenizer: Any):
    """The :class:`~leanvl.models.videopanda.VideoPandaConfig` a recipe trains.

    From ``model.init``'s config when given (with this recipe's preset overrides on top),
    else the preset's; an inline LLM's vocabulary is sized to the tokenizer, whose JSON is
    stored in ``extra["tokenizer"]``.
    """
    from leanvl.models.videopanda import VideoPandaConfig

    over = _preset_overrides(cfg)
    if init is not None:
        config = load_config(VideoPandaConfig, init, over)
    else:
        config = create_model(cfg.model.name, **over).config
    extra = dict(config.extra)
    inherited = init is not None and (init.get("extra") or {}).get("tokenizer")
    if config.llm is not None and hasattr(tokenizer, "backend_tokenizer") and not inherited:
        config.llm.vocab_size = len(tokenizer)
        extra["tokenizer"] = tokenizer.backend_tokenizer.to_str()
    config.extra = extra
    return config


# ------------------------------------------------------------------------------- model
def build_model(cfg: TrainConfig, datamodule: VideoPandaDataModule) -> nn.Module:
    """The model of a stage: built from the data module's config, loaded from ``model.init``
    (every tensor must match), frozen per stage, with LoRA adapters on the LLM when
    ``lora_rank > 0`` (:func:`apply_lora`) and the distillation head attached.

    Raises:
        ValueError: ``model.init`` does not fit (missing / unexpected / mis-shaped tensors).
    """
    from leanvl.models.videopanda import VideoPanda

    recipe = datamodule.recipe
    model = VideoPanda(datamodule.model_config)
    if cfg.model.init:
        state = load_file(str(Path(cfg.model.init) / WEIGHTS_NAME))
        own = model.state_dict()
        bad = sorted(k for k in own if k not in state or state[k].shape != own[k].shape)
        extra = sorted(k for k in state if k not in own)
        if bad or extra:
            raise ValueError(
                f"model.init='{cfg.model.init}' does not fit the model: missing or mis-shaped "
                f"{bad[:6]}, unexpected {extra[:6]}"
            )
        model.load_state_dict(state)
    train_llm = recipe.stage != "align" if recipe.train_llm is None else recipe.train_llm
    model.language_model.requires_grad_(train_llm)
    if recipe.lora_rank:
        apply_lora(model, recipe)
    if recipe.distill_weight > 0 and datamodule.teacher is not None:
        llm_cfg = model.language_model.config
        layers = recipe.distill_layers or default_layers(llm_cfg.num_hidden_layers)
        head = DistillationHead(
            llm_cfg.hidden_size, datamodule.teacher.width, len(layers), recipe.distill_heads
        )
        attach_training_module(model, "distill_head", head)
        model.distill_layers = list(layers)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("videopanda stage %s: %d trainable parameters", recipe.stage, trainable)
    return model


# -------------------------------------------------------------------------------- LoRA
def _import_peft(recipe: VideoPandaRecipe):
    try:
        import peft
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"model.overrides.{_SECTION}.lora_rank={recipe.lora_rank} needs peft, an optional "
            f"dependency: {_LORA_INSTALL} (or lora_rank: 0 to train the LLM fully)"
        ) from exc
    return peft


def lora_target_names(llm: nn.Module, names: list[str]) -> list[str]:
    """Full names (in ``llm``) of the ``nn.Linear`` modules of its decoder layers whose own
    name is in ``names``.

    Raises:
        ConfigError: a name matches no Linear of the decoder layers (named
            ``model.overrides.videopanda.lora_target_modules``, with the names there are).
    """
    key = f"model.overrides.{_SECTION}.lora_target_modules"
    get_decoder = getattr(llm, "get_decoder", None)
    layers = getattr(get_decoder() if callable(get_decoder) else None, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        raise ConfigError(f"{key}: the LLM ({type(llm).__name__}) has no decoder layers to adapt")
    layer_ids = {id(m) for m in layers}
    wanted, available, targets = set(names), set(), []
    for prefix, layer in llm.named_modules():
        if id(layer) not in layer_ids:
            continue
        for sub, mod in layer.named_modules():
            if isinstance(mod, nn.Linear):
                leaf = sub.rsplit(".", 1)[-1]
                available.add(leaf)
                if leaf in wanted:
                    targets.append(f"{prefix}.{sub}")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(
            f"{key}={list(names)!r}: {unknown} are not Linear modules of the LLM's decoder "
            f"layers (those are {sorted(available)}; the LM head, embeddings, STAB and "
            "projector are never adapted)"
        )
    return targets


def _is_lora_param(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def apply_lora(model: nn.Module, recipe: VideoPandaRecipe) -> list[str]:
    """Inject LoRA adapters (peft) into the LLM of ``model`` in place and freeze its weights.

    The adapters (``lora_A`` / ``lora_B`` beside each target's ``base_layer``) are the LLM's
    only trainable parameters; the STAB and the projector keep their stage's setting. The
    model's own ``state_dict()`` (what :func:`leanvl.save_model` writes, so the exported
    folder) is the plain Video-Panda state with the adapters merged into the base weights
    (``W + scale * B @ A``, peft's ``get_delta_weight``), so ``leanvl.load`` / ``leanvl ask``
    open it without peft. A parent module's ``state_dict()`` (the LightningModule's, i.e. the
    ``.ckpt`` that ``resume`` reads) keeps the live, unmerged parameters, so a resumed run
    continues exactly.

    Returns:
        the full names of the adapted Linear modules (in the LLM).

    Raises:
        ModuleNotFoundError: peft is not installed (``pip install 'leanvl[lora]'``).
        ConfigError: a target module is not a Linear of the decoder layers.
    """
    peft = _import_peft(recipe)
    llm = model.language_model
    targets = lora_target_names(llm, recipe.lora_target_modules)
    alpha = recipe.lora_alpha if recipe.lora_alpha is not None else 2 * recipe.lora_rank
    config = peft.LoraConfig(
        r=recipe.lora_rank,
        lora_alpha=alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=targets,
        bias="none",
    )
    llm.requires_grad_(False)
    peft.inject_adapter_in_model(config, llm, adapter_name=_LORA_ADAPTER)
    for name, p in llm.named_parameters():
        p.requires_grad_(_is_lora_param(name))
    model.register_state_dict_post_hook(_merged_lora_state)
    adapters = sum(p.numel() for n, p in llm.named_parameters() if _is_lora_param(n))
    log.info(
        "videopanda LoRA: rank %d, alpha %g, dropout %g on %d modules (%d adapter parameters)",
        recipe.lora_rank,
        alpha,
        recipe.lora_dropout,
        len(targets),
        adapters,
    )
    return targets


@torch.no_grad()
def _merged_lora_state(module: nn.Module, state_dict, prefix: str, local_metadata) -> None:
    """State-dict hook of a LoRA model: at the root (``prefix == ""``), replace every adapted
    Linear's ``base_layer.*`` / ``lora_*`` entries by its merged ``weight`` (and ``bias``), in
    place and in order; nested in a parent (the Lightning checkpoint) leave them as they are."""
    if prefix:
        return
    from peft.tuners.lora import LoraLayer

    layers = {n: m for n, m in module.named_modules() if isinstance(m, LoraLayer)}
    if not layers:
        return
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        owner, _, rest = key.rpartition(".base_layer.")
        if owner in layers:
            if rest == "weight":
                delta = layers[owner].get_delta_weight(_LORA_ADAPTER)
                value = value.detach() + delta.to(device=value.device, dtype=value.dtype)
            state_dict[f"{owner}.{rest}"] = value
        elif not _in_adapted(key, layers):  # lora_A / lora_B / ... entries are dropped
            state_dict[key] = value


def _in_adapted(key: str, layers: dict[str, nn.Module]) -> bool:
    """Whether ``key`` is an entry of one of the adapted modules ``layers``."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in layers for i in range(1, len(parts)))


# -------------------------------------------------------------------------------- task
def exact_match_metrics(
    preds: list[str], answers: list[tuple[str, ...]], types: list[str | None]
) -> dict[str, Any]:
    """Exact-match accuracy (normalised text equal to any accepted answer), overall and per
    question type."""
    hits = [
        normalize_answer(p) in {normalize_answer(a) for a in acc}
        for p, acc in zip(preds, answers, strict=True)
    ]
    out: dict[str, Any] = {"accuracy": sum(hits) / max(1, len(hits)), "n": len(hits)}
    by_type: dict[str, list[bool]] = {}
    for hit, t in zip(hits, types, strict=True):
        if t is not None:
            by_type.setdefault(t, []).append(hit)
    if by_type:
        out["by_type"] = {t: {"accuracy": sum(v) / len(v), "n": len(v)} for t, v in by_type.items()}
    return out


class VideoPandaTask(Task):
    """Answer-token cross-entropy (+ distillation) in training; generation + exact match in
    evaluation.

    Args:
        cfg: the task section (unused fields).
        recipe: the :class:`VideoPandaRecipe`.
        tokenizer: the data module's tokenizer.
        teacher: the frozen teacher (None without distillation).
    """

    name = "videopanda"

    def __init__(
        self,
        cfg,
        recipe: VideoPandaRecipe,
        tokenizer: Any,
        teacher=None,
        predictions_file: Path | None = None,
    ) -> None:
        super().__init__(cfg, tokenizer, 0)
        self.recipe, self.teacher = recipe, teacher
        self.predictions_file = predictions_file

    def losses(self, model, batch):
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        head = getattr(model, "distill_head", None)
        if head is None or self.teacher is None:
            return {"lm": model(ids, batch["frames"], mask, labels).loss}
        frame_tokens, grids = model.encode_videos(batch["frames"])
        spliced = model.splice(ids, frame_tokens, mask, labels)
        out = model.language_model(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask.long(),
            position_ids=spliced.position_ids,
            use_cache=False,
            output_hidden_states=True,
        )
        lm = F.cross_entropy(
            out.logits[:, :-1].float().flatten(0, 1),
            spliced.labels[:, 1:].flatten(),
            ignore_index=model.config.ignore_index,
        )
        teacher = self.teacher.to(ids.device)
        positions = frame_token_positions(ids, mask, grids, model.config.image_token_index)
        distill = distillation_loss(
            out.hidden_states,
            model.distill_layers,
            head,
            teacher,
            batch["teacher_frames"].to(ids.device),
            positions,
            grids,
        )
        return {"lm": lm, "distill": self.recipe.distill_weight * distill}

    def eval_rows(self, model, batch, loader, shuffle):
        frames = batch["frames"]
        if shuffle:
            frames = shuffle_frames(frames, batch["index"])
        gen = model.generate(
            batch["input_ids"],
            frames,
            batch["attention_mask"],
            max_new_tokens=self.recipe.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        seq = F.pad(gen.sequences, (0, self.recipe.max_new_tokens - gen.sequences.shape[1]))
        return {"index": batch["index"], "pred": seq}

    def decode(self, ids: torch.Tensor) -> str:
        """Answer text of generated ids (cut at the first ``</s>``)."""
        ids = ids.tolist()
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[: ids.index(eos)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def metrics(self, model, rows, info: QAEvalData):
        (r,) = rows
        preds = [self.decode(p) for p in r["pred"]]
        out = exact_match_metrics(preds, info.answers, info.types)
        rows_out = [
            {"id": qid, "question": q, "answer": a[0], "pred": p, "type": t}
            for qid, q, a, p, t in zip(
                info.question_ids, info.questions, info.answers, preds, info.types, strict=True
            )
        ]
        if self.predictions_file is not None:
            text = "".join(json.dumps(r) + "\n" for r in rows_out)
            atomic_write_text(self.predictions_file, text)
            out["predictions_file"] = str(self.predictions_file)
        return out


def build_datamodule(cfg: TrainConfig) -> VideoPandaDataModule:
    """The engine hook: conversation data of a Video-Panda stage."""
    return VideoPandaDataModule(cfg)


def build_task(cfg: TrainConfig, datamodule: VideoPandaDataModule) -> VideoPandaTask:
    """The engine hook: the Video-Panda task of the recipe's stage."""
    tag = "_shuffled" if cfg.eval.shuffle_frames else ""
    predictions = Path(cfg.run_dir) / f"predictions_{cfg.eval.split}{tag}.jsonl"
    return VideoPandaTask(
        cfg.task, datamodule.recipe, datamodule.tokenizer, datamodule.teacher, predictions
    )


def recipe_dict(recipe: VideoPandaRecipe) -> dict[str, Any]:
    """The recipe as a plain dict (for reports)."""
    return config_to_dict(recipe)
