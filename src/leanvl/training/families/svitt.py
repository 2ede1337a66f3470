"""SViTT and SViTT-Ego recipes for ``leanvl train`` / ``leanvl eval`` (the ``svitt*`` presets).

SViTT (Li, Niu, Gupta et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers",
CVPR 2023, arXiv 2304.08809) is pretrained with ITC (InfoNCE over the local batch, learnable
temperature), ITM with in-batch hard negatives and MLM (mask rate 0.5); retrieval is evaluated by
ITC similarity, optionally re-ranking each text's top k with the ITM head (spec ``svitt.md``
§4-5). SViTT-Ego (Valdez et al., CVPR 2024 workshops, arXiv 2406.09462) keeps the model and
trains on EgoClip narrations with EgoNCE (Lin et al., "Egocentric Video-Language Pretraining",
NeurIPS 2022): action-aware positives (narrations sharing a verb and a noun class) and
scene-aware negatives (clips of the same video in one batch), evaluated on EgoMCQ with intra- and
inter-video accuracy (spec §13).

What a recipe reads, decided from the files:

* ``data.train_file`` ending in ``.csv``: EgoClip (:func:`leanvl.data.read_egoclip_csv`); every
  clip is a window ``[clip_start, clip_end]`` of a longer video ``<video_uid>/<chunk>.mp4`` under
  ``data.video_dir``; anything else is a retrieval JSON (video + captions).
* evaluation file: EgoMCQ when ``task.name=egomcq`` or when the JSON is an object (EgoMCQ's
  ``{"0": {...}}``); otherwise a retrieval JSON (the same metric keys as the All-in-one tasks).
* ``task.name=qa`` with a VQA preset (``svitt_tiny_vqa``, ``svitt_base_vqa``): QA JSON files and
  ``data.answers_file``; the answer decoder is trained on the ground-truth answer and evaluation
  ranks the answer list (:class:`SViTTQATask`).
* ``task.contrastive_loss``: ``infonce`` (SViTT's ITC: positives = same video / same clip) or
  ``egonce`` (needs EgoClip's verb/noun tags); ``data.sampler=scene`` draws EgoVLP's scene-aware
  batches with :class:`leanvl.data.samplers.SceneGroupedBatchSampler`.

Frames come from leanvl's decoder; with ``data.cache`` every clip window is decoded once into a
uint8 ``.npy`` (``cache_frames`` uniform frames per window) and training samples ``num_frames``
of them, like the engine's frame cache. Texts are cleaned with SViTT's ``pre_text`` and tokenised
as ``[CLS] tokens`` without ``[SEP]`` (the ALBEF tokenizer). Pixels are scaled to [-1, 1]
(``Normalize(0.5, 0.5)``).

Temporal sparse expansion (multi-stage curricula) lives in
:mod:`leanvl.training.families.svitt_stages`; :func:`load_init` resamples the position-bias
tables when a stage starts from a checkpoint trained with another frame count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from leanvl.checkpoint import WEIGHTS_NAME, read_config
from leanvl.data.annotations import (
    read_egoclip_csv,
    read_egomcq_json,
    read_qa_json,
    read_retrieval_json,
)
from leanvl.data.datasets import EGO4D_CHUNK_SECONDS, egoclip_window, resolve_video_path
from leanvl.data.samplers import SceneGroupedBatchSampler, egoclip_segment_ids
from leanvl.evaluation.egomcq import egomcq_scores
from leanvl.layers.rel_pos_3d import resample_temporal_table
from leanvl.losses import ego_nce, tag_multi_hot
from leanvl.metrics import egomcq_accuracy, qa_accuracy
from leanvl.models.svitt import itc_loss, mlm_mask
from leanvl.registry import create_model
from leanvl.text.tokenizer import pre_text
from leanvl.training.config import TrainConfig
from leanvl.training.data import (
    Collate,
    EvalData,
    EvalShardSampler,
    StepSampler,
    VideoTextDataModule,
    sample_seed,
)
from leanvl.training.tasks import Task, retrieval_report, shuffle_frames
from leanvl.video.decode import read_frames
from leanvl.video.sampling import sample_frame_indices

__all__ = [
    "EgoClipTrainDataset",
    "EgoMCQEvalDataset",
    "SViTTCollate",
    "SViTTDataModule",
    "SViTTQATask",
    "SViTTTask",
    "SceneStepSampler",
    "WindowFrames",
    "build_datamodule",
    "build_model",
    "build_task",
    "build_window_cache",
    "handles",
    "load_init",
    "prepare_svitt_video",
]

log = logging.getLogger("leanvl.training")

SCENE_WINDOW_SECONDS = 60.0
"""EgoVLP's ``neg_param``: clips whose narration times fall in the same 60 s window of a video
form one scene group for ``data.sampler=scene``."""

_TASKS = ("pretrain", "retrieval", "egomcq", "qa")


def handles(model_name: str) -> bool:
    """True for the SViTT family's presets (``svitt_base``, ``svitt_tiny``, ``svitt_ego*``)."""
    return model_name.startswith("svitt")


# ------------------------------------------------------------------------------------ frames
def prepare_svitt_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., T, S, S, 3)`` clips -> float ``(..., T, 3, S, S)`` in [-1, 1] (SViTT's
    ``/255`` then ``Normalize(0.5, 0.5)``)."""
    return video.movedim(-1, -3).float().div(127.5).sub_(1.0)


Window = tuple[Path, float | None, float | None]


def _center_square(frames: torch.Tensor, size: int) -> torch.Tensor:
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return frames[:, top : top + size, left : left + size]


def _decode_window(window: Window, frames: int, sample: str, size: int, seed: int | None):
    path, start, end = window
    kw: dict[str, Any] = {"sample": sample, "size": size, "seed": seed}
    if start is not None or end is not None:
        kw.update(start=start, end=end)
    out, _ = read_frames(path, frames, **kw)
    return _center_square(out, size)


class _DecodeWindows(Dataset):
    def __init__(self, windows: Sequence[Window], frames: int, size: int) -> None:
        self.windows, self.frames, self.size = list(windows), frames, size

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        return i, _decode_window(self.windows[i], self.frames, "uniform", self.size, None).numpy()


def build_window_cache(
    windows: Sequence[Window], cache_dir: Path, frames: int, size: int, num_workers: int = 0
) -> Path:
    """Decode every clip window once into ``cache_dir/windows-<key>.npy``: uint8
    ``(N, frames, S, S, 3)``, one row per distinct window in sorted order.

    The key hashes the windows, the sizes and modification times of their files and the decode
    settings; the file is written under a temporary name and renamed (never half-written).
    """
    windows = sorted(set(windows), key=lambda w: (str(w[0]), w[1] or 0.0, w[2] or 0.0))
    h = hashlib.blake2b(digest_size=8)
    h.update(f"windows-v1:{frames}:{size}".encode())
    for path, start, end in windows:
        st = path.stat() if path.exists() else None
        h.update(f"{path}:{start}:{end}:{st.st_size if st else -1}".encode())
        h.update(f":{st.st_mtime_ns if st else -1}".encode())
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"windows-{h.hexdigest()}.npy"
    if out.is_file():
        return out
    tmp = cache_dir / f".{out.name}.{os.getpid()}.tmp"
    array = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(windows), frames, size, size, 3))
    loader = DataLoader(
        _DecodeWindows(windows, frames, size),
        batch_size=None,
        num_workers=num_workers,
        multiprocessing_context="fork" if num_workers and os.name == "posix" else None,
    )
    try:
        for i, clip in loader:
            array[i] = clip
        array.flush()
        del array
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


class WindowFrames:
    """Frames of a list of clip windows ``(file, start, end)``, cached or decoded on demand.

    Args:
        windows: one window per clip (``start``/``end`` None = the whole file).
        num_frames: T frames returned per clip.
        size: frame side S (shorter side resized at decode time, then centre-cropped).
        cache_file: ``.npy`` from :func:`build_window_cache` over these windows (None = decode).
    """

    def __init__(
        self, windows: Sequence[Window], num_frames: int, size: int, cache_file: Path | None
    ) -> None:
        self.windows = list(windows)
        self.num_frames, self.size, self.cache_file = num_frames, size, cache_file
        order = sorted(set(self.windows), key=lambda w: (str(w[0]), w[1] or 0.0, w[2] or 0.0))
        row_of = {w: i for i, w in enumerate(order)}
        self.rows = [row_of[w] for w in self.windows]
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def get(self, i: int, sample: str, seed: int | None) -> torch.Tensor:
        """uint8 ``(T, S, S, 3)`` frames of clip ``i`` (``rand`` sampling uses ``seed``)."""
        if self.cache_file is None:
            return _decode_window(self.windows[i], self.num_frames, sample, self.size, seed)
        if self._array is None:
            self._array = np.load(self.cache_file, mmap_mode="r")
        stored = self._array.shape[1]
        idx = sample_frame_indices(self.num_frames, stored, sample, rng=random.Random(seed))
        return torch.from_numpy(np.ascontiguousarray(self._array[self.rows[i], idx]))


# ---------------------------------------------------------------------------------- datasets
class EgoClipTrainDataset(Dataset):
    """EgoClip narration clips for pretraining; items are addressed by ``(index, seed)``.

    Item: ``index``, ``video`` uint8 (T, S, S, 3), ``text`` (the narration), ``verb_vec`` /
    ``noun_vec`` (multi-hot tag vectors, EgoNCE) and ``group`` (id of the narration text: clips
    with the same narration are never ITM negatives of each other).
    """

    def __init__(self, frames: WindowFrames, records, sample: str, num_verbs: int, num_nouns: int):
        self.frames, self.sample = frames, sample
        self.texts = [r.clip_text for r in records]
        self.verbs, self.nouns = tag_multi_hot(
            [r.tag_verb for r in records], [r.tag_noun for r in records], num_verbs, num_nouns
        )
        ids: dict[str, int] = {}
        self.groups = [ids.setdefault(pre_text(t), len(ids)) for t in self.texts]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        return {
            "index": i,
            "video": self.frames.get(i, self.sample, seed),
            "text": self.texts[i],
            "verb_vec": self.verbs[i],
            "noun_vec": self.nouns[i],
            "group": self.groups[i],
        }


class EgoMCQEvalDataset(Dataset):
    """EgoMCQ questions: the query narration and its 5 candidate clips.

    Item: ``index``, ``video`` uint8 (5, T, S, S, 3), ``text`` (query narration), ``answer`` and
    ``intra`` (all candidates from the query's video; decided from the data by the reader).
    """

    def __init__(self, frames: WindowFrames, records, sample: str) -> None:
        self.frames, self.sample, self.records = frames, sample, list(records)
        self.k = len(self.records[0].choices)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        i, seed = key
        r = self.records[i]
        clips = [self.frames.get(i * self.k + c, self.sample, seed) for c in range(self.k)]
        video = torch.stack(clips)
        return {
            "index": i,
            "video": video,
            "text": r.query.clip_text,
            "answer": r.answer,
            "intra": r.intra,
        }


class SViTTCollate(Collate):
    """The engine's :class:`~leanvl.training.data.Collate` with SViTT's text handling
    (``pre_text`` cleaning; ``[CLS] tokens`` without ``[SEP]``, at most ``max_len`` ids) and the
    EgoClip / EgoMCQ fields (``verb_vec``, ``noun_vec``, ``group``, ``answer``, ``intra``)."""

    def _tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            [pre_text(t) for t in texts],
            padding="longest",
            truncation=True,
            max_length=self.max_len + 1,
            return_tensors="pt",
        )
        ids, mask = enc["input_ids"], enc["attention_mask"]
        sep = ids == self.tokenizer.sep_token_id
        ids, mask = ids.masked_fill(sep, self.tokenizer.pad_token_id), mask.masked_fill(sep, 0)
        length = max(1, int(mask.sum(1).max()))
        return ids[:, :length].contiguous(), mask[:, :length].contiguous()

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate ``items`` (see the class docstring)."""
        batch = super().__call__(items)
        first = items[0]
        for key in ("verb_vec", "noun_vec"):
            if key in first:
                batch[key] = torch.stack([it[key] for it in items])
        for key in ("group", "answer"):
            if key in first:
                batch[key] = torch.tensor([it[key] for it in items])
        if "intra" in first:
            batch["intra"] = torch.tensor([bool(it["intra"]) for it in items])
        return batch


class SceneStepSampler(Sampler[list[tuple[int, int]]]):
    """Scene-aware training batches, step-indexed like the engine's :class:`StepSampler`.

    Wraps :class:`SceneGroupedBatchSampler` (each batch: ``batch_size / 2`` shuffled anchors,
    then one clip of each anchor's scene group) over as many epochs as the run needs, yields
    ``(index, seed)`` keys, and starts at ``start_batch`` when resuming (batch ``b`` is the same
    whether or not the run was interrupted).

    Args:
        group_ids: scene id per clip (:func:`leanvl.data.samplers.egoclip_segment_ids`).
        batch_size: clips per batch (even: pairs of anchor + same-scene clip).
        num_batches: batches of the whole run (per process).
        seed, rank, world, start_batch: as :class:`StepSampler`.
    """

    def __init__(
        self,
        group_ids: Sequence[str],
        batch_size: int,
        num_batches: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
    ) -> None:
        if batch_size < 2 or batch_size % 2:
            raise ValueError(
                f"data.batch_size={batch_size}: data.sampler=scene needs an even batch size >= 2 "
                "(anchor + same-scene clip pairs)"
            )
        self.inner = SceneGroupedBatchSampler(
            group_ids, batch_size // 2, seed=seed, num_replicas=world, rank=rank
        )
        if len(self.inner) == 0:
            raise ValueError(
                f"data.batch_size={batch_size}: larger than the {len(group_ids)} training clips"
            )
        self.batch_size, self.num_batches, self.seed = batch_size, num_batches, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_epoch = len(self.inner)
        b = (self.start_batch // per_epoch) * per_epoch
        epoch = self.start_batch // per_epoch
        while b < self.num_batches:
            self.inner.set_epoch(epoch)
            for batch in self.inner:
                if b >= self.num_batches:
                    return
                if b >= self.start_batch:
                    base = (b * self.world + self.rank) * self.batch_size
                    yield [(i, sample_seed(self.seed, base + j)) for j, i in enumerate(batch)]
                b += 1
            epoch += 1

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start_batch)


# ------------------------------------------------------------------------------ data module
def _is_egomcq_file(path: Path) -> bool:
    """EgoMCQ files are JSON objects; retrieval files are JSON lists."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    return head.startswith("{")


class SViTTDataModule(VideoTextDataModule):
    """Loaders of the SViTT recipes: retrieval JSON or EgoClip csv for training, retrieval JSON
    or EgoMCQ JSON for evaluation (see the module docstring); SViTT text handling.

    Attributes:
        answers: the answer list of ``task.name=qa`` (VQA presets), else None.
        train_kind: ``"egoclip"`` or ``"retrieval"``.
    """

    def __init__(self, config: TrainConfig) -> None:
        if config.task.name not in _TASKS:
            raise ValueError(
                f"task.name={config.task.name!r}: the SViTT recipes support {_TASKS} "
                f"(model.name={config.model.name!r})"
            )
        vqa = config.model.name.endswith("_vqa")
        if vqa != (config.task.name == "qa"):
            raise ValueError(
                f"task.name={config.task.name!r} with model.name={config.model.name!r}: SViTT's "
                "open-ended QA needs a VQA preset (svitt_tiny_vqa, svitt_base_vqa) and a VQA "
                "preset trains only task.name=qa"
            )
        if config.task.qa_weight > 0:
            raise ValueError("task.qa_weight: QA co-training is not available for SViTT models")
        super().__init__(config)
        train = self._file("train")
        self.train_kind = "egoclip" if train is not None and train.suffix == ".csv" else "retrieval"
        if config.data.sampler == "scene" and train is not None and self.train_kind != "egoclip":
            raise ValueError(
                f"data.sampler=scene needs EgoClip training data (a .csv), got "
                f"data.train_file={config.data.train_file!r}"
            )
        egonce = config.task.contrastive_loss == "egonce"
        if egonce and train is not None and self.train_kind != "egoclip":
            raise ValueError(
                "task.contrastive_loss=egonce needs EgoClip training data with verb/noun "
                f"tags (a .csv), got data.train_file={config.data.train_file!r}"
            )
        self._group_ids: list[str] | None = None

    # ---- reading
    def _records(self, split: str):
        path = self._file(split)
        if path is None:
            raise ValueError(f"data.{split}_file is not set")
        if self.cfg.task.name == "qa":
            return read_qa_json(path)
        return read_retrieval_json(path)

    def eval_kind(self, split: str) -> str:
        """``"qa"``, ``"egomcq"`` or ``"retrieval"``: what the file of ``split`` holds."""
        path = self._file(split)
        if path is None:
            raise ValueError(f"data.{split}_file is not set")
        if self.cfg.task.name == "qa":
            return "qa"
        if self.cfg.task.name == "egomcq" or _is_egomcq_file(path):
            return "egomcq"
        return "retrieval"

    def _windows(self, windows: list[Window]) -> WindowFrames:
        d = self.cfg.data
        cache = None
        if d.cache:
            cache_dir = Path(d.cache_dir) if d.cache_dir else Path(d.root) / ".leanvl_cache"
            cache = build_window_cache(
                windows, cache_dir, d.cache_frames, d.image_size, d.num_workers
            )
        return WindowFrames(windows, d.num_frames, d.image_size, cache)

    def _ego_window(self, record) -> Window:
        relative, start, end = egoclip_window(record, EGO4D_CHUNK_SECONDS)
        return resolve_video_path(self.cfg.data.videos, relative), start, end

    def _build(self, split: str | None) -> None:
        if split is None or split in self._splits or (split == "train" and self._train):
            return
        d = self.cfg.data
        if split == "train" and self.train_kind == "egoclip":
            records = read_egoclip_csv(self._file("train"))
            frames = self._windows([self._ego_window(r) for r in records])
            verbs = max((max(r.tag_verb, default=-1) for r in records), default=-1) + 1
            nouns = max((max(r.tag_noun, default=-1) for r in records), default=-1) + 1
            self._train = EgoClipTrainDataset(
                frames, records, d.train_sample, max(verbs, 1), max(nouns, 1)
            )
            self._group_ids = egoclip_segment_ids(records, SCENE_WINDOW_SECONDS)
            return
        if split != "train" and self.eval_kind(split) == "egomcq":
            records = read_egomcq_json(self._file(split))
            ks = {len(r.choices) for r in records}
            if len(ks) != 1:
                raise ValueError(f"{self._file(split)}: questions with {sorted(ks)} choices")
            windows = [self._ego_window(c) for r in records for c in r.choices]
            ds = EgoMCQEvalDataset(self._windows(windows), records, d.eval_sample)
            self._splits[split] = ([ds], EvalData(num_videos=len(windows)))
            return
        super()._build(split)

    # ---- loaders
    def _loader(self, ds: Dataset, sampler: Sampler, batch_size: int) -> DataLoader:
        return self._make_loader(ds, sampler=sampler, batch_size=batch_size)

    def _make_loader(self, ds: Dataset, **kw) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            ds,
            num_workers=workers,
            collate_fn=SViTTCollate(self.tokenizer, self.cfg.data.max_text_len),
            persistent_workers=False,
            multiprocessing_context="fork" if workers and os.name == "posix" else None,
            **kw,
        )

    def train_dataloader(self) -> DataLoader:
        """Step-indexed loader of the whole run: random batches (:class:`StepSampler`) or,
        with ``data.sampler=scene``, scene-aware ones (:class:`SceneStepSampler`)."""
        self._build("train")
        if self._train is None:
            raise ValueError("data.train_file is not set")
        rank, world = self._rank_world()
        t, d = self.cfg.trainer, self.cfg.data
        batches = t.max_steps * t.accumulate_grad_batches
        if d.sampler == "scene":
            sampler = SceneStepSampler(
                self._group_ids, d.batch_size, batches, t.seed, rank, world, self.start_batch
            )
            return self._make_loader(self._train, batch_sampler=sampler)
        sampler = StepSampler(len(self._train), d.batch_size, batches, t.seed, rank, world,
                              self.start_batch)  # fmt: skip
        return self._make_loader(self._train, sampler=sampler, batch_size=d.batch_size)

    def eval_loaders(self, split: str) -> list[DataLoader]:
        """Sharded loaders of ``split`` for this process."""
        rank, world = self._rank_world()
        datasets, _ = self.eval_split(split)
        bs = self.cfg.data.eval_batch_size
        return [self._loader(ds, EvalShardSampler(len(ds), rank, world), bs) for ds in datasets]


def build_datamodule(cfg: TrainConfig) -> SViTTDataModule:
    """The family hook: :class:`SViTTDataModule` of the recipe."""
    return SViTTDataModule(cfg)


# ------------------------------------------------------------------------------------- model
def load_init(model: nn.Module, folder: Path) -> dict[str, Any]:
    """Load a leanvl SViTT checkpoint folder into ``model`` (SViTT's stage carry-over).

    Tensors load 1:1 by name, except the video encoder's relative-position tables when the
    checkpoint was trained with another frame count: their temporal axis is resampled as the
    official code does between curriculum stages (spec §7,
    :func:`leanvl.layers.rel_pos_3d.resample_temporal_table`).

    A VQA model (``svitt_*_vqa``) may start from a pretraining checkpoint: its encoders load, the
    pretraining heads (projections, ITM, MLM, temperature) are left out and listed as
    ``unused``, and the answer decoder stays freshly initialised (``missing``).

    Returns:
        ``{"resampled": (T_old, T_new) | None, "missing": [...], "unused": [...]}``.

    Raises:
        ValueError: a tensor whose shape differs for another reason, or an unknown tensor (for
            a model that is not a VQA model).
    """
    from leanvl.models.svitt import SViTTVQA

    folder = Path(folder)
    meta = read_config(folder)
    old_frames = int(meta["config"].get("num_frames", 1))
    state = load_file(str(folder / WEIGHTS_NAME))
    own = model.state_dict()
    cfg = model.config
    resampled = None
    unexpected = [k for k in state if k not in own]
    if unexpected and not isinstance(model, SViTTVQA):
        raise ValueError(f"model.init='{folder}': tensors the model lacks: {unexpected[:8]}")
    for key in unexpected:
        del state[key]
    for key, value in list(state.items()):
        if value.shape == own[key].shape and not (
            key.endswith("rel_pos.table") and old_frames != cfg.num_frames
        ):
            continue
        if key.endswith("rel_pos.table"):
            state[key] = resample_temporal_table(
                value, old_frames, cfg.num_frames, cfg.grid, cfg.grid
            )
            resampled = (old_frames, cfg.num_frames)
        else:
            raise ValueError(
                f"model.init='{folder}': {key} has shape {tuple(value.shape)}, the model "
                f"{tuple(own[key].shape)}"
            )
    missing = [k for k in own if k not in state]
    model.load_state_dict(state, strict=False)
    return {"resampled": resampled, "missing": missing, "unused": unexpected}


def build_model(cfg: TrainConfig, datamodule: Any = None) -> nn.Module:
    """The family hook: preset ``model.name`` at ``data.image_size`` / ``data.num_frames`` with
    ``model.overrides``, optionally initialised from ``model.init`` (:func:`load_init`)."""
    over = dict(cfg.model.overrides)
    for key in ("image_size", "num_frames"):
        value = getattr(cfg.data, key)
        if key in over and over[key] != value:
            raise ValueError(f"model.overrides.{key}={over[key]} disagrees with data.{key}={value}")
        over[key] = value
    for key in ("token_drop_layers", "xmodal_drop_layers"):
        if key in over:
            over[key] = tuple(over[key])
    try:
        model = create_model(cfg.model.name, **over)
    except TypeError as exc:
        raise ValueError(f"model.overrides: {exc}") from exc
    if cfg.model.init:
        info = load_init(model, Path(cfg.model.init))
        if info["resampled"]:
            log.info("model.init: position-bias tables resampled %s -> %s frames",
                     *info["resampled"])  # fmt: skip
        if info["missing"]:
            log.warning("model.init: freshly initialised: %s", info["missing"])
        if info["unused"]:
            log.info("model.init: left out (the model has no such tensors): %s", info["unused"])
    return model


# -------------------------------------------------------------------------------------- task
def _batch_video(batch: dict[str, torch.Tensor], shuffle: bool = False) -> torch.Tensor:
    """The batch's uint8 clips as SViTT input, frames permuted per item when ``shuffle``."""
    video = batch["video"]
    if shuffle:
        if video.ndim == 6:  # EgoMCQ (B, K, T, ...): every candidate, keyed by (q, k)
            b, k = video.shape[:2]
            keys = (batch["index"][:, None] * k + torch.arange(k)).flatten()
            video = shuffle_frames(video.flatten(0, 1), keys).view(video.shape)
        else:
            video = shuffle_frames(video, batch["index"])
    return prepare_svitt_video(video)


class SViTTTask(Task):
    """SViTT's objectives (ITC or EgoNCE, ITM with hard negatives, MLM) and its evaluations
    (retrieval by ITC with optional ITM re-ranking; EgoMCQ by ITC cosine similarity).

    Loss terms (``task.*_weight`` scale each; 0 turns a term off):

    * ``itc``: ``infonce`` = SViTT's :func:`~leanvl.models.svitt.itc_loss` on
      ``v tᵀ / temp`` (learnable temperature, clamped to [0.001, 0.5]; positives share the
      batch ``index``, i.e. the same video / clip); ``egonce`` =
      :func:`leanvl.losses.ego_nce` on the same similarity (texts as rows, action-aware
      positives from the verb / noun tags; the two directions summed, as EgoVLP).
    * ``itm``: :meth:`leanvl.models.svitt.SViTT.itm_loss` (one hard negative video per text and
      one text per video from the ITC softmax; clips with the same narration are never
      negatives of each other).
    * ``mlm``: :func:`leanvl.models.svitt.mlm_mask` (rate 0.5, 80/10/10), fused with the video
      tokens, cross-entropy over the masked positions.
    """

    name = "pretrain"
    cfg_rerank = 0
    shuffle_rerank = False

    def losses(self, model, batch):
        """Weighted ``itc`` / ``itm`` / ``mlm`` terms of one training batch."""
        cfg = self.cfg
        video = _batch_video(batch)
        ids, mask, idx = batch["text_ids"], batch["text_mask"], batch["index"]
        out = model.encode_video(video)
        text = model.encode_text(ids, mask)
        v, t = model.itc_features(out.pooled, text.cls)
        sim = model.itc_similarity(v, t)  # (videos, texts) / temp
        terms: dict[str, torch.Tensor] = {}
        if cfg.vtc_weight > 0:
            if cfg.contrastive_loss == "egonce":
                if "verb_vec" not in batch:
                    raise ValueError("task.contrastive_loss=egonce: batch without verb/noun tags")
                itc = ego_nce(sim.t(), batch["verb_vec"], batch["noun_vec"], temperature=1.0)
            else:
                itc = itc_loss(sim, idx)
            terms["itc"] = cfg.vtc_weight * itc
        if cfg.itm_weight > 0 and video.shape[0] > 1:
            group = batch.get("group", idx)
            terms["itm"] = cfg.itm_weight * model.itm_loss(sim, text, out.tokens, group)[0]
        if cfg.mlm_weight > 0:
            tok = self.tokenizer
            masked, labels = mlm_mask(
                ids, model.config.vocab_size, 0.5, tok.mask_token_id,
                (tok.pad_token_id, tok.cls_token_id),
            )  # fmt: skip
            if (labels != -100).any():
                logits = model.mlm_logits(masked, mask, out.tokens)
                mlm = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            else:
                mlm = sim.new_zeros(())
            terms["mlm"] = cfg.mlm_weight * mlm
        return terms

    def eval_rows(self, model, batch, loader, shuffle):
        """Rows of a batch: EgoMCQ scores, or retrieval embeddings (videos, then texts)."""
        if "answer" in batch:  # EgoMCQ
            video = _batch_video(batch, shuffle)
            scores = egomcq_scores(model, video, batch["text_ids"], batch["text_mask"])
            return {
                "index": batch["index"],
                "scores": scores,
                "answer": batch["answer"],
                "intra": batch["intra"],
            }
        if loader == 0:
            video = _batch_video(batch, shuffle)
            pooled = model.encode_video(video).pooled
            rows = {"index": batch["index"], "emb": F.normalize(model.vision_proj(pooled), dim=-1)}
            if self.cfg_rerank:
                rows["video"] = batch["video"]
            return rows
        ids, mask = batch["text_ids"], batch["text_mask"]
        cls = model.encode_text(ids, mask).cls
        rows = {"index": batch["index"], "emb": F.normalize(model.text_proj(cls), dim=-1)}
        if self.cfg_rerank:
            rows["ids"] = F.pad(ids, (0, self.max_text_len - ids.shape[1]))
            rows["mask"] = F.pad(mask, (0, self.max_text_len - mask.shape[1]))
        return rows

    def metrics(self, model, rows, info):
        """EgoMCQ ``intra`` / ``inter`` (+ counts, overall accuracy), or retrieval recall
        (``t2v_r1`` ... ``r_mean``, ``n_videos``, ``n_texts``, ``itm_rerank``)."""
        if "scores" in rows[0]:
            r = rows[0]
            out: dict[str, Any] = egomcq_accuracy(r["scores"], r["answer"], r["intra"])
            out["n"] = int(r["answer"].numel())
            out["accuracy"] = float((r["scores"].argmax(1) == r["answer"]).float().mean())
            return out
        videos, texts = rows
        sim = texts["emb"].float() @ videos["emb"].float().t()
        rerank = lambda k: self._rerank(model, sim, videos, texts, k)  # noqa: E731
        return retrieval_report(sim, info, self.cfg_rerank, rerank)

    @torch.no_grad()
    def _rerank(self, model, sim, videos, texts, k: int, batch: int = 32) -> torch.Tensor:
        """Each text's top-k videos re-scored by the ITM match logit (raw logit of class 1,
        as officially), placed above every other video."""
        from leanvl.models.svitt import TextOutput

        top = sim.topk(k, dim=1).indices
        device = videos["emb"].device
        pairs_t = torch.arange(len(top)).repeat_interleave(k)
        pairs_v = top.reshape(-1).cpu()
        scores = []
        for s in range(0, len(pairs_t), batch):
            t, v = pairs_t[s : s + batch].to(device), pairs_v[s : s + batch].to(device)
            clip = videos["video"][v]
            if self.shuffle_rerank:
                clip = shuffle_frames(clip, videos["index"][v])
            ids, mask = texts["ids"][t], texts["mask"][t]
            length = max(1, int(mask.sum(1).max()))
            text = model.encode_text(ids[:, :length], mask[:, :length])
            tokens = model.encode_video(prepare_svitt_video(clip)).tokens
            pair = TextOutput(text.hidden, text.cls, text.attention_mask)
            scores.append(model.itm_logits(pair, tokens)[:, 1].float())
        itm = torch.cat(scores).view(len(top), k).cpu()
        sim = sim.float().cpu()
        below = sim - sim.max() + itm.min() - 1
        return below.scatter(1, top.cpu(), itm)


class SViTTQATask(Task):
    """``qa`` with a VQA preset: open-ended QA as SViTT (ALBEF) does it.

    Training: the answer decoder's summed next-token loss of the ground-truth answer
    (``[CLS] answer [SEP]``, weight 1; :meth:`~leanvl.models.svitt.SViTTVQA.loss`); questions
    whose answer is not in ``data.answers_file`` are left out of the loss. Evaluation: the answer
    list is ranked per question (:meth:`~leanvl.models.svitt.SViTTVQA.rank_answers`, top
    ``min(128, answers)`` by first token, re-scored) and the best answer is the prediction;
    metrics as the ``qa`` task (:func:`leanvl.metrics.qa_accuracy`).
    """

    name = "qa"
    rank_k = 128
    """Answers re-scored per question (the official ``k_test``)."""

    def __init__(self, cfg, tokenizer, max_text_len: int, answers: list[str]) -> None:
        super().__init__(cfg, tokenizer, max_text_len)
        enc = tokenizer(answers, padding="longest", return_tensors="pt")
        self.answer_ids, self.answer_mask = enc["input_ids"], enc["attention_mask"]

    def _question(self, model, batch, shuffle: bool = False):
        mask = batch["text_mask"]
        return model.encode_question(_batch_video(batch, shuffle), batch["text_ids"], mask), mask

    def losses(self, model, batch):
        """``{"qa": loss}`` over the questions with an in-vocabulary answer."""
        keep = batch["label"] != -100
        states, mask = self._question(model, batch)
        if not keep.any():
            return {"qa": states.sum() * 0.0}
        labels = batch["label"][keep]
        ids = self.answer_ids.to(labels.device)[labels]
        amask = self.answer_mask.to(labels.device)[labels]
        length = int(amask.sum(1).max())
        ones = torch.ones_like(labels)
        loss = model.loss(
            states[keep], mask[keep], ids[:, :length], amask[:, :length], ones.float(), ones
        )
        return {"qa": loss}

    def eval_rows(self, model, batch, loader, shuffle):
        """The best-ranked answer of each question (``pred``) beside its ``label``."""
        states, mask = self._question(model, batch, shuffle)
        ids, amask = self.answer_ids.to(states.device), self.answer_mask.to(states.device)
        top, _ = model.rank_answers(states, mask, ids, amask, k=self.rank_k)
        return {"index": batch["index"], "pred": top[:, 0], "label": batch["label"]}

    def metrics(self, model, rows, info):
        """Accuracy (out-of-vocabulary answers wrong), in-vocabulary accuracy, per type/kind."""
        (r,) = rows
        return qa_accuracy(r["pred"], r["label"], info.types, info.kinds)


def build_task(cfg: TrainConfig, datamodule: Any) -> Task:
    """The family hook: :class:`SViTTTask`, or :class:`SViTTQATask` for ``task.name=qa``."""
    if cfg.task.name == "qa":
        return SViTTQATask(cfg.task, datamodule.tokenizer, cfg.data.max_text_len,
                           datamodule.answers)  # fmt: skip
    task = SViTTTask(cfg.task, datamodule.tokenizer, cfg.data.max_text_len)
    task.name = cfg.task.name
    return task
