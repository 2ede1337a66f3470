"""Convert official SViTT checkpoints (github.com/JerryYLi/svitt) to leanvl's :class:`SViTT`.

An official checkpoint is ``torch.save({"model": state_dict, "config": DictConfig, ...})``. The
conversion is pure data work on that state dict:

1. rename the official module names (BEiT ``vision_encoder.*``, BERT ``text_encoder.[bert.]*``,
   ``vision_layernorm``) to leanvl's; pretraining (``text_encoder.bert.*``) and retrieval
   (``text_encoder.*``) layouts are both accepted;
2. drop the recomputable int64 buffers (``relative_position_index``, ``position_ids``) and the
   tied MLM decoder copies (checked equal to the word embeddings / MLM bias first);
3. resample the relative-position tables to another frame count (nearest, official semantics);
4. infer the model config from tensor shapes and the checkpoint's own config (frames, image
   size, sparsity options), then load strictly.

Every key is accounted for: a key that is neither mapped nor in the documented drop list is an
error, so nothing is silently lost.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from leanvl.config import load_config
from leanvl.layers.rel_pos_3d import resample_temporal_table
from leanvl.models.svitt import SViTT, SViTTConfig, SViTTVQA

__all__ = [
    "SViTTConversion",
    "convert_state_dict",
    "convert_svitt_checkpoint",
    "infer_config",
    "pretrain_to_vqa",
    "rename_key",
]

_V = r"vision_encoder\.encoder\.layer\.(\d+)\."
_T = r"text_encoder(?:\.bert)?\.encoder\.layer\.(\d+)\."
_E = r"text_encoder\.(?:bert\.)?embeddings\."
_W = r"\.(weight|bias)"
# (official key regex, leanvl key template); matched with re.fullmatch in order.
_RENAMES: list[tuple[str, str]] = [
    (r"vision_encoder\.embeddings\.cls_token", "vision.cls_token"),
    (r"vision_encoder\.embeddings\.patch_embeddings\.projection" + _W, r"vision.patch_embed.\1"),
    (
        _V + r"attention\.attention\.relative_position_bias\.relative_position_bias_table",
        r"vision.blocks.\1.rel_pos.table",
    ),
    (_V + r"attention\.attention\.(query|key|value)" + _W, r"vision.blocks.\1.\2.\3"),
    (_V + r"attention\.output\.dense" + _W, r"vision.blocks.\1.proj.\2"),
    (_V + r"intermediate\.dense" + _W, r"vision.blocks.\1.fc1.\2"),
    (_V + r"output\.dense" + _W, r"vision.blocks.\1.fc2.\2"),
    (_V + r"layernorm_before" + _W, r"vision.blocks.\1.attn_norm.\2"),
    (_V + r"layernorm_after" + _W, r"vision.blocks.\1.mlp_norm.\2"),
    (_V + r"lambda_1", r"vision.blocks.\1.gamma_attn"),
    (_V + r"lambda_2", r"vision.blocks.\1.gamma_mlp"),
    (r"vision_encoder\.pooler\.layernorm" + _W, r"vision.pool_norm.\1"),
    (r"vision_layernorm" + _W, r"vision_norm.\1"),
    (_E + r"word_embeddings\.weight", "text_embeddings.word.weight"),
    (_E + r"position_embeddings\.weight", "text_embeddings.position.weight"),
    (_E + r"token_type_embeddings\.weight", "text_embeddings.token_type.weight"),
    (_E + r"LayerNorm" + _W, r"text_embeddings.norm.\1"),
    (_T + r"attention\.self\.(query|key|value)" + _W, r"text.layers.\1.self_attn.\2.\3"),
    (_T + r"attention\.output\.dense" + _W, r"text.layers.\1.self_attn.dense.\2"),
    (_T + r"attention\.output\.LayerNorm" + _W, r"text.layers.\1.self_attn.norm.\2"),
    (_T + r"crossattention\.self\.(query|key|value)" + _W, r"text.layers.\1.cross_attn.\2.\3"),
    (_T + r"crossattention\.output\.dense" + _W, r"text.layers.\1.cross_attn.dense.\2"),
    (_T + r"crossattention\.output\.LayerNorm" + _W, r"text.layers.\1.cross_attn.norm.\2"),
    (_T + r"intermediate\.dense" + _W, r"text.layers.\1.fc1.\2"),
    (_T + r"output\.dense" + _W, r"text.layers.\1.fc2.\2"),
    (_T + r"output\.LayerNorm" + _W, r"text.layers.\1.norm.\2"),
    (r"text_encoder\.cls\.predictions\.bias", "mlm_head.bias"),
    (r"text_encoder\.cls\.predictions\.transform\.dense" + _W, r"mlm_head.dense.\1"),
    (r"text_encoder\.cls\.predictions\.transform\.LayerNorm" + _W, r"mlm_head.norm.\1"),
    (r"(vision_proj|text_proj|itm_head)" + _W, r"\1.\2"),
    (r"temp", "temp"),
]
# Keys that are dropped on purpose, with the reason reported.
_DROPS: list[tuple[str, str]] = [
    (r".*relative_position_bias\.relative_position_index", "recomputable index buffer"),
    (r"text_(?:en|de)coder\.(?:bert\.)?embeddings\.position_ids", "recomputable index buffer"),
    (r"text_(?:en|de)coder\.cls\.predictions\.decoder\.weight", "tied to the word embeddings"),
    (r"text_(?:en|de)coder\.cls\.predictions\.decoder\.bias", "tied to the MLM bias"),
]
_TIED = {
    "text_encoder.cls.predictions.decoder.weight": "text_embeddings.word.weight",
    "text_encoder.cls.predictions.decoder.bias": "mlm_head.bias",
    "text_decoder.cls.predictions.decoder.weight": "answer_embeddings.word.weight",
    "text_decoder.cls.predictions.decoder.bias": "answer_head.bias",
}
# The VQA answer decoder (``text_decoder.*``) has the BERT layout of the text encoder.
_DECODER_PREFIXES = {
    "text_embeddings.": "answer_embeddings.",
    "text.layers.": "decoder.layers.",
    "mlm_head.": "answer_head.",
}


@dataclass
class SViTTConversion:
    """Result of a conversion: the target config, its state dict and what happened.

    Attributes:
        config: the inferred :class:`SViTTConfig`.
        state_dict: leanvl weights (strictly loadable into ``SViTT(config)``).
        dropped: official key -> reason, for every key not carried over.
        resampled: ``(old_frames, new_frames)`` if the position tables were resampled.
        notes: how config fields were decided (inferred, from the checkpoint config, defaults).
    """

    config: SViTTConfig
    state_dict: dict[str, Tensor]
    dropped: dict[str, str] = field(default_factory=dict)
    resampled: tuple[int, int] | None = None
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """JSON-serialisable summary (stored as ``extra`` in the checkpoint folder)."""
        return {
            "source": "github.com/JerryYLi/svitt",
            "dropped": self.dropped,
            "resampled_frames": list(self.resampled) if self.resampled else None,
            "notes": self.notes,
            "num_tensors": len(self.state_dict),
        }


def _get(cfg: Any, dotted: str, default: Any = None) -> Any:
    """``cfg.a.b`` for dicts, OmegaConf containers or plain objects; ``default`` if absent."""
    node = cfg
    for part in dotted.split("."):
        if node is None:
            return default
        if isinstance(node, Mapping):
            node = node.get(part)
        else:
            try:
                node = node[part]
            except (KeyError, TypeError, IndexError, AttributeError):
                node = getattr(node, part, None)
    return default if node is None else node


def rename_key(key: str) -> str | None:
    """leanvl name of official key ``key``, or None when it matches no rename rule."""
    if key.startswith("text_decoder."):
        new = rename_key("text_encoder." + key.removeprefix("text_decoder."))
        for old, target in _DECODER_PREFIXES.items():
            if new is not None and new.startswith(old):
                return target + new.removeprefix(old)
        return None
    for pattern, template in _RENAMES:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(template)
    return None


def _layer_ids(keys: list[str], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(pattern, k))})


def _grid_and_frames(
    rows: int, image_size: int | None, patch: int, frames: int | None, seq_len: int | None
) -> tuple[int, int]:
    """Patch grid side and frame count behind a position table of ``rows`` rows.

    ``image_size`` (checkpoint config) fixes the grid; otherwise the official index buffer's
    sequence length ``1 + T*g*g`` disambiguates; otherwise the official 224/16 = 14 is assumed.
    """
    candidates = [image_size // patch] if image_size else range(1, 65) if seq_len else [14]
    for g in candidates:
        span = (2 * g - 1) ** 2
        if (rows - 3) % span or ((rows - 3) // span) % 2 == 0:
            continue
        t = ((rows - 3) // span + 1) // 2
        if (frames is None or frames == t) and (seq_len is None or seq_len == 1 + t * g * g):
            return g, t
    raise ValueError(
        f"a position table of {rows} rows fits no patch grid"
        + (f" of image_size={image_size}" if image_size else "")
        + (f" and num_frames={frames}" if frames else "")
        + "; pass image_size=... and num_frames=... with --set"
    )


def infer_config(
    model: Mapping[str, Tensor], official: Any = None, overrides: Mapping[str, Any] | None = None
) -> tuple[SViTTConfig, list[str]]:
    """Build the :class:`SViTTConfig` matching an official state dict.

    Sizes come from tensor shapes; frames, image size and the sparsity options from the
    official config (``video_input.num_frames``, ``image_res``, ``vision_encoder_args``,
    ``text_encoder_args``); ``overrides`` (config field -> value) win over both. BERT's head
    count is not visible in the weights: it defaults to the vision head count when both widths
    are equal, else ``width // 64``.

    Returns:
        The config and notes describing where non-shape fields came from.
    """
    keys = list(model)
    notes: list[str] = []
    v = "vision_encoder.encoder.layer."
    table = model[v + "0.attention.attention.relative_position_bias.relative_position_bias_table"]
    patch = model["vision_encoder.embeddings.patch_embeddings.projection.weight"].shape[-1]
    image_res = (overrides or {}).get("image_size") or _get(official, "image_res")
    frames = (overrides or {}).get("checkpoint_frames") or _get(official, "video_input.num_frames")
    index = model.get(v + "0.attention.attention.relative_position_bias.relative_position_index")
    seq_len = index.shape[0] if index is not None else None
    grid, frames = _grid_and_frames(table.shape[0], image_res, patch, frames, seq_len)
    notes.append(
        f"checkpoint frames={frames} (from "
        + ("the checkpoint config)" if _get(official, "video_input.num_frames") else "the table)")
    )
    text = (
        "text_encoder.bert."
        if "text_encoder.bert.embeddings.word_embeddings.weight" in model
        else "text_encoder."
    )
    word = model[text + "embeddings.word_embeddings.weight"]
    text_layers = _layer_ids(keys, re.escape(text) + r"encoder\.layer\.(\d+)\..*")
    fusion = _layer_ids(keys, re.escape(text) + r"encoder\.layer\.(\d+)\.crossattention\..*")
    vision_width = model["vision_encoder.embeddings.cls_token"].shape[-1]
    heads = table.shape[1]
    text_heads = heads if word.shape[1] == vision_width else max(word.shape[1] // 64, 1)
    values: dict[str, Any] = dict(
        image_size=grid * patch,
        patch_size=patch,
        num_frames=frames,
        vision_width=vision_width,
        vision_layers=len(_layer_ids(keys, re.escape(v) + r"(\d+)\..*")),
        vision_heads=heads,
        vision_mlp=model[v + "0.intermediate.dense.weight"].shape[0],
        vocab_size=word.shape[0],
        text_width=word.shape[1],
        text_layers=len(text_layers),
        text_heads=text_heads,
        text_mlp=model[text + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        fusion_layer=fusion[0] if fusion else len(text_layers),
        max_text_positions=model[text + "embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=model[text + "embeddings.token_type_embeddings.weight"].shape[0],
        embed_dim=model["vision_proj.weight"].shape[0] if "vision_proj.weight" in model else 256,
        temp_init=float(model["temp"]) if "temp" in model else 0.07,
        decoder_layers=len(_layer_ids(keys, r"text_decoder\.bert\.encoder\.layer\.(\d+)\..*")) or 3,
        layer_scale_init=0.1 if v + "0.lambda_1" in model else 0.0,
        mlm_head="text_encoder.cls.predictions.bias" in model,
    )
    notes.append(f"text_heads={text_heads} (not stored in the weights; override if different)")
    vargs = _get(official, "vision_encoder_args")
    if vargs is None:
        values.update(sparse_random=None, token_keep_rate=1.0, token_drop_layers=())
        notes.append("no vision_encoder_args in the checkpoint config: dense, no token dropping")
    else:
        values.update(
            sparse_random=_get(vargs, "sparse_random_attn"),
            sparse_local=int(_get(vargs, "sparse_local_attn", 1)),
            attn_block_size=int(_get(vargs, "attn_block_size", 56)),
            token_keep_rate=float(_get(vargs, "token_keep_rate", 1.0)),
            token_drop_layers=tuple(_get(vargs, "token_drop_loc", (3, 6, 9))),
            token_keep_strategy=str(_get(vargs, "token_keep_strategy", "cls_attn")),
        )
        notes.append("sparsity options from the checkpoint's vision_encoder_args")
    targs = _get(official, "text_encoder_args")
    values.update(
        xmodal_keep_rate=float(_get(targs, "token_keep_rate", 1.0)),
        xmodal_drop_layers=tuple(_get(targs, "token_drop_loc", (9,))),
    )
    values.update({k: x for k, x in (overrides or {}).items() if k != "checkpoint_frames"})
    config = load_config(
        SViTTConfig, {k: list(x) if isinstance(x, tuple) else x for k, x in values.items()}
    )
    return config, notes


def convert_state_dict(
    model: Mapping[str, Tensor],
    official: Any = None,
    num_frames: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SViTTConversion:
    """Convert an official SViTT state dict (``checkpoint["model"]``).

    Args:
        model: the official state dict.
        official: the checkpoint's ``config`` (OmegaConf/dict) or None.
        num_frames: target frame count; position tables are resampled when it differs.
        overrides: :class:`SViTTConfig` field values that win over inferred ones.

    Raises:
        ValueError: a key matches no rule, tied copies differ, or a shape is inconsistent.
    """
    overrides = dict(overrides or {})
    if "num_frames" in overrides:  # a target frame count: resample, as with ``num_frames``
        num_frames = num_frames or int(overrides.pop("num_frames"))
    config, notes = infer_config(model, official, overrides)
    old_frames = config.num_frames
    if num_frames is not None and num_frames != old_frames:
        config = dataclasses.replace(config, num_frames=num_frames)
    out: dict[str, Tensor] = {}
    dropped: dict[str, str] = {}
    unknown = []
    for key, value in model.items():
        reason = next((r for p, r in _DROPS if re.fullmatch(p, key)), None)
        if reason is not None:
            dropped[key] = reason
            continue
        new = rename_key(key)
        if new is None:
            unknown.append(key)
            continue
        if new.endswith("rel_pos.table") and config.num_frames != old_frames:
            g = config.grid
            value = resample_temporal_table(value, old_frames, config.num_frames, g, g)
        out[new] = value.detach().clone().contiguous()
    if unknown:
        raise ValueError(
            f"official SViTT checkpoint has {len(unknown)} unrecognised keys: {unknown[:10]}"
        )
    for official_key, target in _TIED.items():
        if official_key in model and not torch.equal(model[official_key], out[target]):
            raise ValueError(f"'{official_key}' is not tied to '{target}': refusing to drop it")
    resampled = (old_frames, config.num_frames) if config.num_frames != old_frames else None
    return SViTTConversion(config, out, dropped, resampled, notes)


def convert_svitt_checkpoint(
    checkpoint: Mapping[str, Any],
    num_frames: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    task: str | None = None,
) -> tuple[SViTT | SViTTVQA, SViTTConversion]:
    """Convert an official checkpoint dict and load it strictly into a new :class:`SViTT`.

    Args:
        checkpoint: the loaded official checkpoint (``{"model": ..., "config": ...}``) or a bare
            state dict.
        num_frames: target frame count (resampling the position tables).
        overrides: :class:`SViTTConfig` field values that win over inferred ones.
        task: ``"vqa"`` initialises the VQA model from a pretraining checkpoint (the official
            remap, :func:`pretrain_to_vqa`); None keeps the checkpoint's own model.

    Returns:
        An :class:`SViTT` (pretraining / retrieval checkpoints) or :class:`SViTTVQA` (VQA
        checkpoints, ``text_decoder.*``) and the conversion record.
    """
    model_sd = checkpoint.get("model", checkpoint)
    marker = "vision_encoder.embeddings.cls_token"
    if not isinstance(model_sd, Mapping) or marker not in model_sd:
        raise ValueError(f"not an official SViTT checkpoint: no 'model' state dict with '{marker}'")
    if task == "vqa":
        model_sd = pretrain_to_vqa(model_sd)
    elif task is not None:
        raise ValueError(f"task={task!r}: expected 'vqa' or None")
    conversion = convert_state_dict(model_sd, checkpoint.get("config"), num_frames, overrides)
    is_vqa = any(k.startswith("text_decoder.") for k in model_sd)
    with torch.device("meta"):
        model = (SViTTVQA if is_vqa else SViTT)(conversion.config)
    model.load_state_dict(conversion.state_dict, strict=True, assign=True)
    return model.eval(), conversion


def pretrain_to_vqa(model: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The official VQA initialisation from a pretraining state dict (``setup_model``).

    ``text_encoder.bert.X -> text_encoder.X``; the fusion layers ``fusion_layer..`` become the
    answer decoder's layers ``0..`` (``text_decoder.bert.encoder.layer.*``, cross-attention
    included), the embeddings and the MLM head are copied to ``text_decoder.bert.embeddings`` and
    ``text_decoder.cls``; the ITC/ITM heads and the video pooler, which the VQA model lacks, are
    left out.
    """
    fusion = _layer_ids(
        list(model), r"text_encoder\.bert\.encoder\.layer\.(\d+)\.crossattention\..*"
    )
    if not fusion:
        raise ValueError("pretrain_to_vqa: no text_encoder.bert.* fusion layers in the checkpoint")
    skip = ("vision_proj.", "text_proj.", "itm_head.", "temp", "vision_encoder.pooler.")
    out: dict[str, Tensor] = {}
    for key, value in model.items():
        if key.startswith(skip):
            continue
        if key.startswith("text_encoder.cls."):
            out["text_decoder." + key.removeprefix("text_encoder.")] = value
            continue
        if key.startswith("text_encoder.bert.embeddings."):
            out["text_decoder." + key.removeprefix("text_encoder.")] = value
        layer = re.match(r"text_encoder\.bert\.encoder\.layer\.(\d+)\.(.*)", key)
        if layer and int(layer.group(1)) >= fusion[0]:
            renum = int(layer.group(1)) - fusion[0]
            out[f"text_decoder.bert.encoder.layer.{renum}.{layer.group(2)}"] = value
        out[key.replace("text_encoder.bert.", "text_encoder.", 1)] = value
    return out
