"""Training objectives and evaluation passes of the recipes: pretrain, retrieval, qa, mc.

The objectives are All-in-one's (``shared/specs/allinone.md`` §3), written against the public
methods of :class:`leanvl.models.allinone.AllInOne` (any model with the same methods works):

* **VTC** — text-only and video-only passes, cosine similarity of the projected [CLS] tokens,
  symmetric InfoNCE at temperature 0.05 over the local batch (§3.3).
* **ITM** — half of the batch keeps its clip (label 1), the other half gets another clip of the
  batch (label 0); optionally some negatives are the clip itself played backwards
  (``task.itm_reversed``), a temporal hard negative. Cross-entropy on ``itm_logits`` (§3.2;
  the word-patch-alignment term is not implemented).
* **MLM** — BERT masking of the caption, cross-entropy on the masked positions only (the
  vocabulary projection is computed for those positions alone).
* **QA** — classification over the answer vocabulary from ``cls_feats``; -100 ignored (§3.4).
* **MC** — every option scored against its clip (ITM "match" logit or the MC-VQA head), softmax
  cross-entropy over options (§3.5).

Evaluation passes return one row per item (with its dataset ``index``) so that the caller can
gather rows from all processes and drop the padded duplicates before computing metrics.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leanvl.metrics import mc_accuracy, qa_accuracy, retrieval_metrics
from leanvl.text.tokenizer import mask_tokens
from leanvl.training.config import TaskConfig
from leanvl.video.transforms import NORMALIZATION

__all__ = ["Task", "build_task", "prepare_video", "shuffle_frames"]


def prepare_video(video: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, S, S, 3) clips -> float (B, T, 3, S, S), ImageNet-normalised (the
    All-in-one ``a100`` normalisation)."""
    x = video.permute(0, 1, 4, 2, 3).float().div_(255.0)
    mean, std = NORMALIZATION["imagenet"]
    mean = x.new_tensor(mean).view(1, 1, 3, 1, 1)
    std = x.new_tensor(std).view(1, 1, 3, 1, 1)
    return (x - mean) / std


def shuffle_frames(video: torch.Tensor, index: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Permute the frames of every clip of ``video`` (B, T, ...) with a permutation that is
    never the identity, drawn from ``(seed, index)`` so the result does not depend on batching
    or on the number of processes."""
    t = video.shape[1]
    if t < 2:
        return video
    out = torch.empty_like(video)
    for b, i in enumerate(index.tolist()):
        g = torch.Generator().manual_seed(seed * 1_000_003 + int(i))
        perm = torch.randperm(t, generator=g)
        while torch.equal(perm, torch.arange(t)):
            perm = torch.randperm(t, generator=g)
        out[b] = video[b, perm.to(video.device)]
    return out


def _pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(x, (0, length - x.shape[-1]))


def retrieval_report(sim: torch.Tensor, info: Any, rerank_k: int, rerank) -> dict[str, Any]:
    """Retrieval metrics of a (texts, videos) similarity matrix, with the counts, and, when
    ``rerank_k > 0``, the same metrics after ``rerank(k)`` (the re-scored matrix) under
    ``itm_rerank`` (with its ``k``). Shared by the All-in-one and SViTT retrieval tasks."""
    out: dict[str, Any] = retrieval_metrics(sim, info.text_to_video)
    out["n_videos"], out["n_texts"] = info.num_videos, info.num_texts
    k = min(rerank_k, sim.shape[1])
    if k > 0:
        out["itm_rerank"] = retrieval_metrics(rerank(k), info.text_to_video)
        out["itm_rerank"]["k"] = k
    return out


class Task:
    """Base class: a task computes training losses and evaluation rows for a model.

    Args:
        cfg: the task section of the recipe.
        tokenizer: tokenizer of the data (MLM needs its special ids).
        max_text_len: texts are padded to this length in evaluation rows.
    """

    name = "base"

    def __init__(self, cfg: TaskConfig, tokenizer: Any, max_text_len: int) -> None:
        self.cfg, self.tokenizer, self.max_text_len = cfg, tokenizer, max_text_len

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted loss terms of one training batch (their sum is optimised)."""
        raise NotImplementedError

    def eval_rows(
        self, model: nn.Module, batch: dict[str, torch.Tensor], loader: int, shuffle: bool
    ) -> dict[str, torch.Tensor]:
        """Per-item evaluation outputs of batch from evaluation loader ``loader``."""
        raise NotImplementedError

    def metrics(self, model: nn.Module, rows: list[dict[str, torch.Tensor]], info: Any) -> dict:
        """Metrics from the gathered, de-duplicated rows of every evaluation loader."""
        raise NotImplementedError

    def _video(self, batch: dict[str, torch.Tensor], shuffle: bool = False) -> torch.Tensor:
        video = batch["video"]
        if shuffle:
            video = shuffle_frames(video, batch["index"])
        return prepare_video(video)


class ContrastiveMatchingTask(Task):
    """``pretrain`` and ``retrieval``: VTC + ITM (+ MLM) on captioned clips; evaluated by
    fast retrieval (VTC similarity), optionally re-ranking each text's top k with ITM."""

    name = "pretrain"

    def losses(self, model, batch):
        cfg = self.cfg
        video = self._video(batch)
        ids, mask = batch["text_ids"], batch["text_mask"]
        out: dict[str, torch.Tensor] = {}
        if cfg.vtc_weight > 0:
            out["vtc"] = cfg.vtc_weight * self.vtc_loss(model, video, ids, mask)
        if cfg.itm_weight > 0:
            out["itm"] = cfg.itm_weight * self.itm_loss(model, video, ids, mask, batch["index"])
        if cfg.mlm_weight > 0:
            out["mlm"] = cfg.mlm_weight * self.mlm_loss(model, video, ids, mask)
        return out

    def vtc_loss(self, model, video, ids, mask) -> torch.Tensor:
        """Symmetric InfoNCE over the batch (sum of both directions, as All-in-one)."""
        t = F.normalize(model.encode_text(ids, mask), dim=-1)
        v = F.normalize(model.encode_video(video), dim=-1)
        logits = t @ v.t() / self.cfg.temperature
        target = torch.arange(len(t), device=t.device)
        return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)

    def itm_loss(self, model, video, ids, mask, index) -> torch.Tensor:
        """Matching loss with half positives, half negatives (other clip or reversed clip)."""
        b = video.shape[0]
        labels = torch.zeros(b, dtype=torch.long, device=video.device)
        labels[torch.randperm(b)[: b // 2].to(video.device)] = 1
        shift = torch.randint(1, max(b, 2), (b,))
        other = (torch.arange(b) + shift) % b if b > 1 else torch.zeros(b, dtype=torch.long)
        reverse = torch.rand(b) < self.cfg.itm_reversed
        if b == 1:
            reverse[:] = True
        mixed = video[other.to(video.device)]
        mixed = torch.where(
            reverse.to(video.device)[:, None, None, None, None], video.flip(1), mixed
        )
        # A "negative" that is the same clip (duplicates in a batch) would be a wrong label.
        same = (index[other] == index) & ~reverse
        labels = torch.where(same.to(video.device), torch.ones_like(labels), labels)
        pairs = torch.where(labels.bool()[:, None, None, None, None], video, mixed)
        logits = model.itm_logits(model(pairs, ids, mask).cls_feats)
        return F.cross_entropy(logits, labels)

    def mlm_loss(self, model, video, ids, mask) -> torch.Tensor:
        """Masked-token cross-entropy, decoder applied to the masked positions only."""
        masked, labels = mask_tokens(ids.cpu(), self.tokenizer, probability=0.15)
        masked, labels = masked.to(ids.device), labels.to(ids.device)
        chosen = labels != -100
        if not chosen.any():
            return ids.new_zeros((), dtype=torch.float)
        feats = model(video, masked, mask).text_feats[chosen]
        return F.cross_entropy(model.mlm_logits(feats), labels[chosen])

    def eval_rows(self, model, batch, loader, shuffle):
        if loader == 0:  # clips
            video = self._video(batch, shuffle)
            rows = {"index": batch["index"], "emb": F.normalize(model.encode_video(video), dim=-1)}
            if self.cfg_rerank:
                rows["video"] = batch["video"]  # uint8, re-ranking pairs it with texts later
            return rows
        ids, mask = batch["text_ids"], batch["text_mask"]
        rows = {"index": batch["index"], "emb": F.normalize(model.encode_text(ids, mask), dim=-1)}
        if self.cfg_rerank:
            rows["ids"] = _pad_to(ids, self.max_text_len)
            rows["mask"] = _pad_to(mask, self.max_text_len)
        return rows

    cfg_rerank = 0  # set by the module from eval.rerank_k
    shuffle_rerank = False

    def metrics(self, model, rows, info):
        videos, texts = rows
        sim = texts["emb"].float() @ videos["emb"].float().t()
        rerank = lambda k: self._rerank(model, sim, videos, texts, k)  # noqa: E731
        return retrieval_report(sim, info, self.cfg_rerank, rerank)

    @torch.no_grad()
    def _rerank(self, model, sim, videos, texts, k: int, batch: int = 64) -> torch.Tensor:
        """Replace each text's top-k scores by ITM match logits (placed above all others)."""
        top = sim.topk(k, dim=1).indices  # (N_text, k)
        device = videos["emb"].device
        pairs_t = torch.arange(len(top)).repeat_interleave(k)
        pairs_v = top.reshape(-1).cpu()
        scores = []
        for s in range(0, len(pairs_t), batch):
            t, v = pairs_t[s : s + batch], pairs_v[s : s + batch]
            clip = videos["video"][v.to(device)]
            if self.shuffle_rerank:
                clip = shuffle_frames(clip, videos["index"][v.to(device)])
            ids, mask = texts["ids"][t.to(device)], texts["mask"][t.to(device)]
            length = int(mask.sum(1).max())
            out = model(prepare_video(clip), ids[:, :length], mask[:, :length])
            scores.append(model.rank_scores(out.cls_feats).float())
        itm = torch.cat(scores).view(len(top), k).cpu()
        sim = sim.float().cpu()
        below = sim - sim.max() + itm.min() - 1  # every non-shortlisted video ranks below
        return below.scatter(1, top.cpu(), itm)


class QATask(Task):
    """``qa``: open-ended question answering as classification over the answer vocabulary."""

    name = "qa"

    def losses(self, model, batch):
        out = model(self._video(batch), batch["text_ids"], batch["text_mask"])
        return {
            "qa": F.cross_entropy(model.qa_logits(out.cls_feats), batch["label"], ignore_index=-100)
        }

    def eval_rows(self, model, batch, loader, shuffle):
        out = model(self._video(batch, shuffle), batch["text_ids"], batch["text_mask"])
        logits = model.qa_logits(out.cls_feats)
        return {"index": batch["index"], "pred": logits.argmax(-1), "label": batch["label"]}

    def metrics(self, model, rows, info):
        (r,) = rows
        return qa_accuracy(r["pred"], r["label"], info.types, info.kinds)


class MCTask(Task):
    """``mc``: multiple choice over K candidate captions per clip."""

    name = "mc"

    def _scores(self, model, batch, shuffle=False):
        video = self._video(batch, shuffle)
        if self.cfg.mc_head == "vtc":  # contrastive similarity of each option to the clip
            b, k, length = batch["option_ids"].shape
            t = model.encode_text(
                batch["option_ids"].view(b * k, length), batch["option_mask"].view(b * k, length)
            )
            v = F.normalize(model.encode_video(video), dim=-1)
            return torch.einsum("bkd,bd->bk", F.normalize(t, dim=-1).view(b, k, -1), v)
        return model.mc_scores(
            video, batch["option_ids"], batch["option_mask"], head=self.cfg.mc_head
        )

    def losses(self, model, batch):
        return {"mc": F.cross_entropy(self._scores(model, batch), batch["label"])}

    def eval_rows(self, model, batch, loader, shuffle):
        return {
            "index": batch["index"],
            "scores": self._scores(model, batch, shuffle),
            "label": batch["label"],
        }

    def metrics(self, model, rows, info):
        (r,) = rows
        return mc_accuracy(r["scores"], r["label"], info.types)


def build_task(cfg: TaskConfig, tokenizer: Any, max_text_len: int) -> Task:
    """The :class:`Task` object of ``cfg.name``."""
    classes = {
        "pretrain": ContrastiveMatchingTask,
        "retrieval": ContrastiveMatchingTask,
        "qa": QATask,
        "mc": MCTask,
    }
    task = classes[cfg.name](cfg, tokenizer, max_text_len)
    task.name = cfg.name
    return task
