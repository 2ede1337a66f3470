"""One interface over the model families for the search and question-answering tools.

The index, search and serve tools need three things from a model: a contrastive video
embedding, a contrastive text embedding in the same space, and a matching head that scores an
aligned (text, clip) pair. Each family spells them differently:

- All-in-one (Wang et al., "All in One: Exploring Unified Video-Language Pre-training",
  CVPR 2023): ``encode_video`` / ``encode_text`` (VTC projections) and the ITM "match" logit
  ``rank_scores`` of a joint pass; open-ended QA with ``qa_logits``.
- SViTT (Li et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers", CVPR 2023):
  ``itc_features`` of the pooled video and the text [CLS], and ``itm_logits`` of the fusion
  layers over the video tokens; node sparsity exposes the surviving patches per drop layer.

:class:`ModelAdapter` maps a loaded leanvl checkpoint folder onto (``encode_videos``,
``encode_texts``, ``match_scores``), plus the clip preprocessing the model was trained with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from leanvl.checkpoint import WEIGHTS_NAME, load, read_config
from leanvl.text.tokenizer import load_tokenizer
from leanvl.video import read_frames
from leanvl.video.transforms import NORMALIZATION, build_transform

__all__ = ["SEARCH_FAMILIES", "ModelAdapter", "load_adapter", "model_id"]

SEARCH_FAMILIES = ("allinone", "svitt")


def model_id(folder: str | Path) -> str:
    """Identity of a checkpoint folder: ``<family>-<first 16 hex of sha256(weights)>``.

    Two folders holding the same weights get the same id; retraining changes it, which is how
    an index notices it was built with another model.
    """
    folder = Path(folder)
    family = read_config(folder)["family"]
    digest = hashlib.sha256()
    with open(folder / WEIGHTS_NAME, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{family}-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class ClipSpec:
    """How a family's clips are decoded and normalised.

    Attributes:
        num_frames: frames sampled per clip.
        size: square side the model takes.
        sample: frame sampling (``leanvl.video.sample_frame_indices`` names).
        preprocess: ``"engine"`` (decode at shorter side ``size``, centre crop, ImageNet
            normalisation: what ``leanvl train`` / ``leanvl demo`` feed All-in-one), or a
            :func:`leanvl.video.transforms.build_transform` name (``"allinone"``, ``"svitt"``)
            for converted official checkpoints.
    """

    num_frames: int
    size: int
    sample: str
    preprocess: str


def _engine_clip(frames: torch.Tensor, size: int) -> torch.Tensor:
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    x = frames[:, top : top + size, left : left + size].permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = NORMALIZATION["imagenet"]
    return (x - x.new_tensor(mean).view(1, 3, 1, 1)) / x.new_tensor(std).view(1, 3, 1, 1)


class ModelAdapter:
    """A loaded model with the family-independent calls the tools use.

    Args:
        model: a model loaded by :func:`leanvl.load` (family in :data:`SEARCH_FAMILIES`, or
            any family for :meth:`answer`/:meth:`generate` where it applies).
        family: the checkpoint's family name.
        ident: :func:`model_id` of the checkpoint.
        folder: the checkpoint folder.
    """

    def __init__(self, model: nn.Module, family: str, ident: str, folder: Path) -> None:
        self.model, self.family, self.model_id, self.folder = model, family, ident, folder
        self.extra: dict[str, Any] = dict(getattr(model, "checkpoint_extra", {}) or {})
        data = (self.extra.get("recipe") or {}).get("data") or {}
        cfg = model.config
        if family == "allinone":
            self.clip = ClipSpec(
                num_frames=int(data.get("num_frames") or cfg.num_frames),
                size=cfg.image_size,
                sample=str(data.get("eval_sample") or "middle"),
                preprocess="engine" if data else "allinone",
            )
            self.max_text_len = cfg.max_text_len
        elif family in ("svitt", "svitt_ego"):
            self.clip = ClipSpec(cfg.num_frames, cfg.image_size, "middle", "svitt")
            self.max_text_len = min(40, cfg.max_text_positions)
        else:
            self.clip = None
            self.max_text_len = 40
        self.tokenizer = load_tokenizer(data.get("vocab"), max_length=self.max_text_len)
        # SViTT's block-sparse attention draws random key blocks; a fixed generator makes every
        # embedding reproducible (the index must not depend on when a clip was embedded).
        self._seed = 0

    @property
    def searchable(self) -> bool:
        """Whether the model has a contrastive video/text embedding (index and search)."""
        if self.family == "allinone":
            return bool(self.model.config.vtc_dim)
        return self.family in ("svitt", "svitt_ego")

    @property
    def answers(self) -> list[str] | None:
        """The answer vocabulary of an All-in-one QA head (``checkpoint_extra["answers"]``)."""
        answers = self.extra.get("answers")
        return list(answers) if answers else None

    # ----------------------------------------------------------------------------- clips
    def load_clip(self, path: str | Path) -> torch.Tensor:
        """Decode and normalise one video file: float (T, 3, S, S).

        Raises:
            leanvl.video.VideoDecodeError: the file cannot be decoded.
        """
        if self.clip is None:
            raise ValueError(f"{self.family}: no clip preprocessing for this family")
        spec = self.clip
        if spec.preprocess == "engine":
            frames, _ = read_frames(path, spec.num_frames, sample=spec.sample, size=spec.size)
            return _engine_clip(frames, spec.size)
        decode_size = int(1.2 * spec.size) if spec.preprocess == "allinone" else None
        frames, _ = read_frames(path, spec.num_frames, sample=spec.sample, size=decode_size)
        transform = build_transform(spec.preprocess, train=False, size=spec.size)
        return transform(frames.permute(0, 3, 1, 2).contiguous())

    def _tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
        )
        return enc["input_ids"], enc["attention_mask"]

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self._seed)

    # ------------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def encode_videos(self, clips: torch.Tensor) -> torch.Tensor:
        """L2-normalised contrastive embeddings (B, D) of clips (B, T, 3, S, S)."""
        if self.family == "allinone":
            return F.normalize(self.model.encode_video(clips).float(), dim=-1)
        if self.family in ("svitt", "svitt_ego"):
            out = self.model.encode_video(clips, generator=self._generator())
            return F.normalize(self.model.vision_proj(out.pooled).float(), dim=-1)
        raise ValueError(f"{self.family}: no contrastive video embedding")

    @torch.no_grad()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised contrastive embeddings (N, D) of texts."""
        ids, mask = self._tokens(texts)
        if self.family == "allinone":
            return F.normalize(self.model.encode_text(ids, mask).float(), dim=-1)
        if self.family in ("svitt", "svitt_ego"):
            cls = self.model.encode_text(ids, mask).cls
            return F.normalize(self.model.text_proj(cls).float(), dim=-1)
        raise ValueError(f"{self.family}: no contrastive text embedding")

    @torch.no_grad()
    def match_scores(self, text: str, clips: torch.Tensor) -> torch.Tensor:
        """Matching-head scores (B,) of one text against clips (B, T, 3, S, S): the ITM
        "match" logit minus the "no match" logit for SViTT, All-in-one's ``rank_scores``."""
        ids, mask = self._tokens([text])
        b = clips.shape[0]
        ids, mask = ids.expand(b, -1), mask.expand(b, -1)
        if self.family == "allinone":
            out = self.model(clips, ids, mask)
            return self.model.rank_scores(out.cls_feats).float()
        if self.family in ("svitt", "svitt_ego"):
            video = self.model.encode_video(clips, generator=self._generator())
            text_out = self.model.encode_text(ids, mask)
            logits = self.model.itm_logits(text_out, video.tokens).float()
            return logits[:, 1] - logits[:, 0]
        raise ValueError(f"{self.family}: no matching head")

    # ------------------------------------------------------------------------------- QA
    @torch.no_grad()
    def answer(self, clip: torch.Tensor, question: str, top: int = 5) -> list[tuple[str, float]]:
        """Open-ended QA with All-in-one's QA head: the ``top`` answers and probabilities.

        Args:
            clip: float (T, 3, S, S) from :meth:`load_clip`.
            question: the question text.
            top: how many answers to return.

        Raises:
            ValueError: the model has no QA head or its checkpoint stores no answer vocabulary.
        """
        if self.family != "allinone" or not self.model.config.num_answers:
            raise ValueError(f"{self.folder}: this {self.family} model has no QA head")
        answers = self.answers
        if answers is None or len(answers) != self.model.config.num_answers:
            raise ValueError(
                f"'{self.folder}': config.json extra.answers is missing or does not match "
                f"num_answers={self.model.config.num_answers}"
            )
        ids, mask = self._tokens([question])
        out = self.model(clip.unsqueeze(0), ids, mask)
        probs = self.model.qa_logits(out.cls_feats).float().softmax(-1)[0]
        values, index = probs.topk(min(top, len(answers)))
        return [
            (answers[i], float(v)) for v, i in zip(values.tolist(), index.tolist(), strict=True)
        ]

    @torch.no_grad()
    def kept_patches(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """SViTT node sparsity: per drop layer, the ORIGINAL indices of surviving patches of
        ``clip`` (T, 3, S, S) (patch ``p`` of frame ``t`` is index ``t * n + p``)."""
        if self.family not in ("svitt", "svitt_ego"):
            raise ValueError(f"{self.family}: no node sparsity to show")
        out = self.model.encode_video(clip.unsqueeze(0), generator=self._generator())
        return [idx[0].cpu() for idx in out.kept_token_idx]


def load_adapter(folder: str | Path, device: str | torch.device = "cpu") -> ModelAdapter:
    """Load a leanvl checkpoint folder (e.g. ``leanvl demo``'s ``DIR/model``) for the tools.

    Args:
        folder: the checkpoint folder.
        device: where the model runs.

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint folder.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"'{folder}': not a leanvl checkpoint folder (no config.json)")
    model = load(folder, device=device)
    family = read_config(folder)["family"]
    return ModelAdapter(model, family, model_id(folder), folder.resolve())
