"""Video-Panda's feature distillation: a frozen teacher's patch features supervise the LLM's
hidden states at the frame-token positions (spec ``videopanda.md`` §5.3).

Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free Video-Language Models",
CVPR 2025 (arXiv 2412.18609), Table 5: cosine distillation against LanguageBind's video encoder.

* **Teacher** (:class:`PatchTeacher` protocol): any module with ``image_size``, ``patch_size``
  and ``width`` attributes whose ``forward`` maps ``(N, 4, S, S)`` frames (CLIP-normalised
  R, G, B + validity mask, one frame per row) to ``(N, G*G, width)`` patch features in raster
  order. :class:`AllInOneTeacher` wraps a leanvl All-in-one ViT (random or trained) and returns
  a hidden state of its blocks (the penultimate by default, like ``mm_vision_select_layer=-2``);
  :func:`build_teacher` builds one from the recipe, or imports a factory ``"pkg.mod:fn"``.
* **Head** (:class:`DistillationHead`, the official ``VideoCompressor``): each selected LLM
  hidden state gets its own LayerNorm + bias-free Linear to the teacher width; the projection
  of the last selected layer queries the others (multi-head, scale ``width^-1/2``, softmax over
  layers), the result goes through a Linear and is added to a Linear of the last layer.
* **Loss** (:func:`distillation_loss`): per real frame ``1 - mean cos(student, teacher)`` over
  its ``h*w`` spatial tokens (context token and ``<row>`` tokens removed), averaged over frames
  whose teacher mask is not empty. When the teacher grid inside the valid band differs from the
  student's LSD grid, the teacher map is resized to it (area average when it is larger,
  bilinear when smaller; the official code only average-pools).

The head trains with the model but is not part of a Video-Panda checkpoint (the official
converter drops the compressor too): :func:`attach_training_module` registers it on the model
while keeping it out of ``state_dict`` (see the function for what that means for resuming).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from leanvl.video.transforms import NORMALIZATION

__all__ = [
    "AllInOneTeacher",
    "DistillationHead",
    "PatchTeacher",
    "TeacherConfig",
    "attach_training_module",
    "build_teacher",
    "default_layers",
    "distillation_loss",
    "frame_token_positions",
]


class PatchTeacher(Protocol):
    """What a teacher offers: frames ``(N, 4, S, S)`` -> patch features ``(N, G*G, width)``."""

    image_size: int
    patch_size: int
    width: int

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch features of CLIP-normalised frames with a mask channel."""
        ...


@dataclass
class TeacherConfig:
    """Which frozen teacher the distillation uses.

    Attributes:
        kind: ``allinone`` (a leanvl All-in-one ViT) or ``module`` (``target`` factory).
        init: leanvl checkpoint folder of the All-in-one teacher (e.g. ``leanvl demo``'s
            ``DIR/model``); None = the random preset ``preset`` with ``overrides``.
        preset: All-in-one preset of a random teacher.
        overrides: config fields of the random preset.
        layer: hidden state returned (0 = patch embeddings, -1 = last block, -2 = penultimate).
        target: ``kind=module``: ``"package.module:factory"`` returning a :class:`PatchTeacher`.
        kwargs: keyword arguments of ``target``.
    """

    kind: str = "allinone"
    init: str | None = None
    preset: str = "allinone_tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    layer: int = -2
    target: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


class AllInOneTeacher(nn.Module):
    """A frozen All-in-one ViT as a per-frame patch-feature teacher.

    Args:
        model: a :class:`leanvl.models.allinone.AllInOne`.
        layer: hidden state to return (``depth + 1`` states: embeddings, then each block).
    """

    def __init__(self, model: nn.Module, layer: int = -2) -> None:
        super().__init__()
        cfg = model.config
        states = cfg.depth + 1
        index = layer if layer >= 0 else states + layer
        if not 0 <= index < states:
            raise ValueError(f"teacher.layer={layer}: the teacher has {states} hidden states")
        self.model, self.blocks = model, index
        self.image_size, self.patch_size, self.width = (
            cfg.image_size,
            cfg.patch_size,
            cfg.hidden_size,
        )
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> AllInOneTeacher:
        """The teacher always stays in evaluation mode."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 4, S, S)`` CLIP-normalised frames -> ``(N, G*G, width)`` patch features."""
        clip_mean, clip_std = NORMALIZATION["clip"]
        mean, std = NORMALIZATION["imagenet"]
        x = frames[:, :3]
        view = (1, 3, 1, 1)
        pixels = x * x.new_tensor(clip_std).view(view) + x.new_tensor(clip_mean).view(view)
        x = (pixels - x.new_tensor(mean).view(view)) / x.new_tensor(std).view(view)
        vt = self.model.transformer
        h = vt.embed(x, 1, None)
        for block in vt.blocks[: self.blocks]:
            h = block(h, None)
        return h[:, self.model.config.num_prefix_tokens :]


def build_teacher(cfg: TeacherConfig, image_size: int, patch_size: int) -> nn.Module:
    """The frozen teacher of a recipe.

    A random All-in-one teacher gets ``image_size`` / ``patch_size`` (half the student's frame
    side and the student's patch, so its grid equals the student's LSD grid) unless its
    overrides say otherwise.

    Raises:
        ValueError: unknown kind, bad target, or a teacher without the protocol attributes.
    """
    if cfg.kind == "allinone":
        if cfg.init:
            from leanvl.checkpoint import load, read_config

            family = read_config(cfg.init)["family"]
            if family != "allinone":
                raise ValueError(
                    f"teacher.init='{cfg.init}' is a {family} checkpoint, not allinone"
                )
            model = load(Path(cfg.init))
        else:
            from leanvl.registry import create_model

            over = {"image_size": image_size, "patch_size": patch_size, "num_frames": 1}
            over.update({"drop_rate": 0.0, "drop_path_rate": 0.0, **cfg.overrides})
            model = create_model(cfg.preset, **over)
        teacher: nn.Module = AllInOneTeacher(model, cfg.layer)
    elif cfg.kind == "module":
        if not cfg.target or ":" not in cfg.target:
            raise ValueError(f"teacher.target={cfg.target!r}: expected 'package.module:factory'")
        module_name, _, attr = cfg.target.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"teacher.target={cfg.target!r}: {exc}") from exc
        teacher = factory(**cfg.kwargs)
    else:
        raise ValueError(f"teacher.kind={cfg.kind!r}: expected 'allinone' or 'module'")
    for name in ("image_size", "patch_size", "width"):
        if not isinstance(getattr(teacher, name, None), int):
            raise ValueError(f"teacher ({cfg.kind}) has no integer attribute '{name}'")
    teacher.requires_grad_(False)
    return teacher.eval()


def default_layers(num_layers: int, count: int = 9) -> list[int]:
    """Hidden-state indices the head reads: from the last (``num_layers``) down to 0 in
    ``count - 1`` equal steps (``[32, 28, ..., 0]`` for 32 layers, as released)."""
    step = max(1, num_layers // max(1, count - 1))
    return list(range(num_layers, -1, -step))


class DistillationHead(nn.Module):
    """The official ``VideoCompressor``: LLM hidden states of several layers -> teacher width.

    Args:
        llm_width: hidden size D of the LLM.
        width: teacher feature width.
        num_layers: how many hidden states are read (the first is the query layer).
        heads: attention heads over the layers (must divide ``width``).
    """

    def __init__(self, llm_width: int, width: int, num_layers: int, heads: int = 8) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError("distill_layers: the head needs at least 2 hidden states")
        if width % heads:
            raise ValueError(f"distill_heads={heads} does not divide the teacher width {width}")
        self.heads, self.width = heads, width
        self.norm_layer = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(llm_width), nn.Linear(llm_width, width, bias=False))
            for _ in range(num_layers)
        )
        self.input_layer = nn.Linear(llm_width, width)
        self.output_layer = nn.Linear(width, width)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """``(n, L, D)`` hidden states of n tokens at the L selected layers -> ``(n, width)``."""
        proj = torch.stack([m(states[:, i]) for i, m in enumerate(self.norm_layer)], dim=1)
        n, layers, width = proj.shape
        hd = width // self.heads
        q = proj[:, 0].view(n, self.heads, hd)
        kv = proj[:, 1:].view(n, layers - 1, self.heads, hd)
        attn = torch.einsum("nhd,nlhd->nhl", q, kv) / math.sqrt(width)
        mixed = torch.einsum("nhl,nlhd->nhd", attn.softmax(-1), kv).reshape(n, width)
        return self.output_layer(mixed) + self.input_layer(states[:, 0])


def frame_token_positions(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    grids: torch.Tensor,
    image_token_index: int = -200,
) -> list[tuple[int, int, torch.Tensor]]:
    """Where the spatial tokens of every frame sit in the right-padded spliced sequence.

    Args:
        input_ids: ``(B, N)`` right-padded prompt ids with placeholders.
        attention_mask: ``(B, N)`` text mask.
        grids: ``(B*T, 2)`` LSD grids (h, w) from the STAB.

    Returns:
        Per frame (video-major): ``(sample, frame, positions)``, positions = the ``h*w``
        spliced indices of the spatial tokens in raster order (context and ``<row>`` tokens
        skipped).
    """
    out = []
    frame = 0
    for b in range(input_ids.shape[0]):
        ids = input_ids[b][attention_mask[b].bool()]
        slots = (ids == image_token_index).nonzero()[:, 0].tolist()
        shift = 0
        for slot in slots:
            h, w = (int(v) for v in grids[frame])
            start = slot + shift
            rows = torch.arange(h).view(h, 1) * (w + 1) + torch.arange(w).view(1, w)
            out.append((b, frame, start + 1 + rows.flatten()))
            shift += 1 + h * (w + 1) - 1
            frame += 1
    return out


def _teacher_targets(feats: torch.Tensor, mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Teacher tokens of one frame inside its valid rectangle, resized to the (h, w) grid."""
    g = int(round(math.sqrt(feats.shape[0])))
    grid = feats.view(g, g, -1)
    rows = mask.any(1).nonzero()[:, 0]
    cols = mask.any(0).nonzero()[:, 0]
    box = grid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].permute(2, 0, 1)[None]
    if box.shape[-2:] != (h, w):
        if box.shape[-2] >= h and box.shape[-1] >= w:
            box = F.adaptive_avg_pool2d(box, (h, w))
        else:
            box = F.interpolate(box, size=(h, w), mode="bilinear", align_corners=False)
    return box[0].flatten(1).t()


def distillation_loss(
    hidden_states: Sequence[torch.Tensor],
    layers: Sequence[int],
    head: DistillationHead,
    teacher: nn.Module,
    teacher_frames: torch.Tensor,
    positions: list[tuple[int, int, torch.Tensor]],
    grids: torch.Tensor,
) -> torch.Tensor:
    """Cosine distillation loss of a batch (mean over frames with a non-empty teacher mask).

    Args:
        hidden_states: the LLM's ``output_hidden_states`` (index 0 = input embeddings).
        layers: indices into ``hidden_states``; the first is the query layer.
        head: the :class:`DistillationHead`.
        teacher: a :class:`PatchTeacher`.
        teacher_frames: ``(B*T, 4, St, St)`` teacher-resolution frames (video-major).
        positions: :func:`frame_token_positions` of the batch.
        grids: ``(B*T, 2)`` LSD grids.
    """
    with torch.no_grad():
        feats = teacher(teacher_frames.to(next(head.parameters()).dtype)).float()
        p = teacher.patch_size
        tmask = F.avg_pool2d(teacher_frames[:, 3:].float(), p)[:, 0] > 0
    stacked = torch.stack([hidden_states[i] for i in layers], dim=2)  # (B, L_seq, n, D)
    losses = []
    for b, f, pos in positions:
        if not bool(tmask[f].any()):
            continue  # zero-padded frame: no target (the official term is exactly 0)
        h, w = (int(v) for v in grids[f])
        student = head(stacked[b, pos.to(stacked.device)]).float()
        target = _teacher_targets(feats[f], tmask[f], h, w)
        losses.append(1 - F.cosine_similarity(student, target, dim=-1).mean())
    if not losses:
        return stacked.sum() * 0.0
    return torch.stack(losses).mean()


def attach_training_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Register ``module`` as ``model.<name>`` for training only.

    Its parameters are trained with the model (they are in ``named_parameters``), but they
    are left out of ``state_dict`` and are not expected by ``load_state_dict``, so exported
    checkpoints stay plain Video-Panda folders. Consequence: a Lightning checkpoint does not
    hold them either, and a resumed run restarts the head from fresh weights.
    """
    model.add_module(name, module)
    marker = f"{name}."

    def drop(mod, state_dict, prefix, local_metadata) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + marker)]:
            del state_dict[key]

    def forgive(mod, incompatible) -> None:
        missing = incompatible.missing_keys
        missing[:] = [k for k in missing if marker not in k]

    model.register_state_dict_post_hook(drop)
    model.register_load_state_dict_post_hook(forgive)
