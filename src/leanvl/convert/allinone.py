"""Convert official All-in-one checkpoints to leanvl checkpoint folders.

Official checkpoints (showlab/all-in-one, Wang et al., CVPR 2023) are PyTorch-Lightning 1.1.4
``.ckpt`` pickles holding ``state_dict`` (keys of ``AllinoneTransformerSS``, no prefix) and
``hyper_parameters = {"config": <sacred config>}``. They are read with the restricted unpickler of
:mod:`leanvl.convert.safe_load` (no pickled code runs); plain state dicts (``.pth``, ``.ckpt``,
``.safetensors``) work too.

What the conversion does (``shared/specs/allinone.md`` §6):

* strips a leading ``module.`` (and ``model.`` when every key has it) and renames the
  CoTraining (All-in-one+) ``vtm_score.`` head to ``itm_score.``;
* infers the configuration from the weights (width, depth, distilled ViT, patch/image size,
  vocabulary, text positions, frames, heads and their layouts) and from ``hyper_parameters``
  (the ``vit`` name gives the number of heads, ``num_frames`` the target frame count);
* drops what leanvl does not store, with the reason: the ``position_ids`` buffer, ``rank_output``
  (a storage view of ITM row 1 in the official model; checked to be identical), heads leanvl does
  not implement;
* adapts sizes the official way: the temporal embedding is sliced to the first ``num_frames``
  rows or zero-padded; a text position table of another length keeps its first rows and
  initialises the rest (``text_positions="copy"``) or is re-initialised entirely like the
  official fine-tuning path (``"reinit"``);
* loads strictly into :class:`~leanvl.models.allinone.AllInOne` and writes ``config.json`` +
  ``model.safetensors`` with the report in ``extra["conversion"]``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from leanvl.checkpoint import CONFIG_NAME, save_model
from leanvl.convert.safe_load import read_checkpoint
from leanvl.models.allinone import PATCH_ORDERS, AllInOne, AllInOneConfig

__all__ = ["ConversionReport", "convert_allinone", "infer_config", "read_official_checkpoint"]

# Heads of the official model that leanvl does not implement (image-only or broken tasks).
UNSUPPORTED_HEADS = {
    "nlvr2_classifier.": "NLVR2 image-pair head (image-only task, not implemented)",
    "vcop_classifier.": "VCOP frame-order head (not in any released recipe, not implemented)",
    "mpp_score.": "masked-patch-prediction head (broken in the official code, §8.9)",
    "rank_output_2.": "VCR QA->R head (image-only task; a view of ITM row 1 anyway)",
}
HEADS_BY_VIT_SIZE = {"tiny": 3, "small": 6, "base": 12, "large": 16}
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16}
TEXT_POSITION_MODES = ("copy", "reinit")


@dataclass
class ConversionReport:
    """What :func:`convert_allinone` did.

    Attributes:
        source: the input file.
        config: the inferred :class:`AllInOneConfig` of the written model.
        renamed: official key -> leanvl key, for keys whose name changed.
        dropped: official key -> why it was not kept.
        adapted: leanvl key -> how its values were changed (slice, pad, re-initialisation).
        inferred: config field -> where its value came from.
    """

    source: str
    config: AllInOneConfig
    renamed: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    adapted: dict[str, str] = field(default_factory=dict)
    inferred: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in the checkpoint's ``extra["conversion"]``)."""
        out = dataclasses.asdict(self)
        out["config"] = dataclasses.asdict(self.config)
        return out

    def summary(self) -> str:
        """Human-readable multi-line summary for the CLI."""
        cfg = self.config
        lines = [
            f"source: {self.source}",
            f"model: H={cfg.hidden_size} depth={cfg.depth} heads={cfg.num_heads} "
            f"distilled={cfg.distilled} frames={cfg.num_frames} text_len={cfg.max_text_len} "
            f"vocab={cfg.vocab_size} image={cfg.image_size}/{cfg.patch_size}",
            f"heads: itm={cfg.itm_head} mlm={cfg.mlm_head} vtc_dim={cfg.vtc_dim} "
            f"qa={cfg.qa_head if cfg.num_answers else 'none'}({cfg.num_answers}) "
            f"mc_vqa={cfg.mc_vqa_head}",
        ]
        lines += [f"inferred {k}: {v}" for k, v in self.inferred.items()]
        lines += [f"renamed {k} -> {v}" for k, v in self.renamed.items()]
        lines += [f"dropped {k}: {v}" for k, v in self.dropped.items()]
        lines += [f"adapted {k}: {v}" for k, v in self.adapted.items()]
        return "\n".join(lines)


def read_official_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an official checkpoint without running pickled code.

    Returns:
        (state dict, official config dict). The config is ``hyper_parameters["config"]`` of a
        Lightning checkpoint, or ``{}`` for a plain state dict.
    """
    ckpt = read_checkpoint(path)  # raises CheckpointReadError / UnsafeCheckpointError
    hparams = ckpt.get("hyper_parameters") or {}
    config = hparams.get("config", hparams) if isinstance(hparams, Mapping) else {}
    for key in ("state_dict", "model", "module"):
        if isinstance(ckpt.get(key), Mapping):
            ckpt = ckpt[key]
            break
    state = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"'{path}': no tensors found (not a state dict or Lightning checkpoint)")
    return state, dict(config) if isinstance(config, Mapping) else {}


def _rename(state: dict[str, torch.Tensor], report: ConversionReport) -> dict[str, torch.Tensor]:
    # "module." comes from DDP wrapping (stripped wherever it appears first); "model." from
    # wrappers that hold the network as an attribute (stripped only if every key has it).
    wrapped = all(k.removeprefix("module.").startswith("model.") for k in state)
    out = {}
    for key, value in state.items():
        new = key.removeprefix("module.")
        new = new.removeprefix("model.") if wrapped else new
        if new.startswith("vtm_score."):  # All-in-one+ (CoTraining) name of the ITM head
            new = "itm_score." + new[len("vtm_score.") :]
        if new != key:
            report.renamed[key] = new
        out[new] = value
    return out


def _require(state: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"'{source}': missing '{key}'; not an All-in-one checkpoint?")
    return state[key]


def _num_heads(width: int, official: Mapping[str, Any], report: ConversionReport) -> int:
    vit = str(official.get("vit", ""))
    for size, heads in HEADS_BY_VIT_SIZE.items():
        if f"_{size}_" in vit:
            report.inferred["num_heads"] = f"{heads} from hyper_parameters vit={vit!r}"
            return heads
    if width in HEADS_BY_WIDTH:
        report.inferred["num_heads"] = f"{HEADS_BY_WIDTH[width]} from width {width} (Ti/S/B table)"
        return HEADS_BY_WIDTH[width]
    if "num_heads" in official:
        report.inferred["num_heads"] = f"{official['num_heads']} from hyper_parameters num_heads"
        return int(official["num_heads"])
    raise ValueError(
        f"cannot infer num_heads for width {width} (not Ti/S/B and no hyper_parameters); "
        "pass num_heads (CLI: --num-heads)"
    )


def infer_config(
    state: Mapping[str, torch.Tensor],
    official: Mapping[str, Any],
    report: ConversionReport,
    **overrides: Any,
) -> AllInOneConfig:
    """Infer an :class:`AllInOneConfig` from (renamed) official weights and config.

    Args:
        state: the state dict after :func:`_rename`.
        official: the official config dict (``hyper_parameters["config"]``), may be empty.
        report: receives where every inferred value came from.
        overrides: config fields to force (``num_frames``, ``max_text_len``, ``num_heads``,
            ``patch_order``...).
    """
    src = report.source
    width = _require(state, "token_type_embeddings.weight", src).shape[1]
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.blocks\.(\d+)\.", k))}
    if not blocks:
        raise ValueError(f"'{src}': no transformer.blocks.* weights")
    distilled = "transformer.dist_token" in state
    patch = _require(state, "transformer.patch_embed.proj.weight", src).shape[-1]
    num_patches = _require(state, "transformer.pos_embed", src).shape[1] - (2 if distilled else 1)
    grid = math.isqrt(num_patches)
    if grid * grid != num_patches:
        raise ValueError(
            f"'{src}': transformer.pos_embed holds {num_patches} patches, not a square"
        )
    ckpt_frames = _require(state, "transformer.temporal_embed", src).shape[1]
    cfg: dict[str, Any] = {
        "hidden_size": width,
        "depth": max(blocks) + 1,
        "distilled": distilled,
        "patch_size": patch,
        "image_size": grid * patch,
        "vocab_size": _require(state, "text_embeddings.word_embeddings.weight", src).shape[0],
        "max_text_len": _require(state, "text_embeddings.position_embeddings.weight", src).shape[0],
        "num_frames": int(official.get("num_frames", ckpt_frames)),
        "mlm_head": "mlm_score.decoder.weight" in state,
        "itm_head": "itm_score.fc.weight" in state,
        "vtc_dim": state["txt_proj.weight"].shape[0] if "txt_proj.weight" in state else 0,
        "mc_vqa_head": "mc_vqa_classifier.1.weight" in state,
    }
    report.inferred["num_frames"] = (
        f"{cfg['num_frames']} from hyper_parameters num_frames"
        if "num_frames" in official
        else f"{ckpt_frames} from transformer.temporal_embed"
    )
    if "vqa_classifier.0.weight" in state:
        cfg["qa_head"], cfg["num_answers"] = "vqav2", state["vqa_classifier.3.weight"].shape[0]
    elif "vqa_classifier.1.weight" in state:
        cfg["qa_head"], cfg["num_answers"] = "openend", state["vqa_classifier.4.weight"].shape[0]
    if "num_heads" not in overrides:
        cfg["num_heads"] = _num_heads(width, official, report)
    cfg.update(overrides)
    for name, value in overrides.items():
        report.inferred[name] = f"{value} (given)" if name != "patch_order" else str(value)
    return AllInOneConfig(**cfg)


def _adapt(
    state: dict[str, torch.Tensor],
    config: AllInOneConfig,
    report: ConversionReport,
    text_positions: str,
) -> dict[str, torch.Tensor]:
    """Drop what leanvl does not store and resize temporal / text-position tables."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        reason = next(
            (why for prefix, why in UNSUPPORTED_HEADS.items() if key.startswith(prefix)), None
        )
        if key == "text_embeddings.position_ids":
            reason = "constant buffer (arange), rebuilt by the model"
        elif key.startswith("rank_output."):
            itm = state.get("itm_score.fc." + key.split(".", 1)[1])
            if itm is None or not torch.equal(value, itm[1:]):
                raise ValueError(
                    f"'{report.source}': {key} is not ITM row 1 (the official model makes it a "
                    "view of itm_score.fc row 1); cannot represent it"
                )
            reason = "view of itm_score.fc row 1 (AllInOne.rank_scores reads that row)"
        if reason is not None:
            report.dropped[key] = reason
            continue
        out[key] = (value.float() if value.is_floating_point() else value).contiguous()

    modality = out["token_type_embeddings.weight"]
    if modality.shape[0] > 2:
        out["token_type_embeddings.weight"] = modality[:2]
        report.dropped["token_type_embeddings.weight[2:]"] = "NLVR2 image-pair modality row"

    temporal = out["transformer.temporal_embed"]
    t_ckpt, t = temporal.shape[1], config.num_frames
    if t_ckpt > t:
        out["transformer.temporal_embed"] = temporal[:, :t].clone()
        report.adapted["transformer.temporal_embed"] = f"kept the first {t} of {t_ckpt} frames"
    elif t_ckpt < t:
        pad = temporal.new_zeros(1, t - t_ckpt, temporal.shape[2])
        out["transformer.temporal_embed"] = torch.cat([temporal, pad], dim=1)
        report.adapted["transformer.temporal_embed"] = (
            f"zero-padded from {t_ckpt} to {t} frames (official load_temporal_fix='zeros')"
        )

    key = "text_embeddings.position_embeddings.weight"
    table, n = out[key], config.max_text_len
    if table.shape[0] != n:
        gen = torch.Generator().manual_seed(0)
        new = torch.randn(n, table.shape[1], generator=gen) * config.init_std
        if text_positions == "copy":
            keep = min(n, table.shape[0])
            new[:keep] = table[:keep]
            report.adapted[key] = f"{table.shape[0]} -> {n} positions: first {keep} rows copied" + (
                f", {n - keep} new rows N(0, {config.init_std}) seed 0" if n > keep else ""
            )
        else:
            report.adapted[key] = (
                f"{table.shape[0]} -> {n} positions: whole table re-initialised "
                f"N(0, {config.init_std}) seed 0 (official fine-tuning behaviour)"
            )
        out[key] = new
    return out


def convert_allinone(
    in_path: str | Path,
    out_dir: str | Path,
    *,
    num_frames: int | None = None,
    max_text_len: int | None = None,
    num_heads: int | None = None,
    patch_order: str = "raster",
    text_positions: str = "copy",
) -> ConversionReport:
    """Convert an official All-in-one checkpoint into a leanvl checkpoint folder.

    Args:
        in_path: official ``.ckpt`` (Lightning) or a plain state dict (``.pth``, ``.ckpt``,
            ``.safetensors``).
        out_dir: folder to write (``leanvl.load(out_dir)`` opens it). An existing folder is
            replaced only if it is a leanvl checkpoint.
        num_frames: target frame count (default: the checkpoint's ``num_frames`` setting, else
            the temporal-embedding length); the temporal embedding is sliced or zero-padded.
        max_text_len: target text length (default: the checkpoint's position table).
        num_heads: attention heads, when they cannot be inferred (non-standard widths).
        patch_order: ``"raster"`` (deterministic) or ``"random"`` (official behaviour).
        text_positions: ``"copy"`` or ``"reinit"``, used when ``max_text_len`` changes the
            position table.

    Returns:
        The :class:`ConversionReport` (also stored in the folder's ``config.json``).
    """
    if text_positions not in TEXT_POSITION_MODES:
        raise ValueError(
            f"text_positions={text_positions!r}: expected one of {TEXT_POSITION_MODES}"
        )
    if patch_order not in PATCH_ORDERS:
        raise ValueError(f"patch_order={patch_order!r}: expected one of {PATCH_ORDERS}")
    out_dir = Path(out_dir)
    occupied = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if occupied and not (out_dir / CONFIG_NAME).is_file():
        raise FileExistsError(
            f"'{out_dir}' exists and is not a leanvl checkpoint folder; refusing to replace it"
        )
    state, official = read_official_checkpoint(in_path)
    report = ConversionReport(source=str(in_path), config=AllInOneConfig())
    state = _rename(state, report)
    overrides: dict[str, Any] = {"patch_order": patch_order}
    for name, value in (
        ("num_frames", num_frames),
        ("max_text_len", max_text_len),
        ("num_heads", num_heads),
    ):
        if value is not None:
            overrides[name] = value
    config = infer_config(state, official, report, **overrides)
    report.config = config
    state = _adapt(state, config, report, text_positions)

    with torch.device("meta"):
        model = AllInOne(config)
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"'{in_path}': weights do not fit the inferred model: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"'{in_path}': weights do not fit the inferred model: missing "
            f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}"
        )
    save_model(model.eval(), out_dir, extra={"conversion": report.to_dict()})
    return report
