"""What ``leanvl bench model`` runs for each model family: inputs, forward, components, tokens.

* **All-in-one** -- the joint text+video pass (the official ``infer``: one sequence of
  ``L`` text + ``1 + P`` visual tokens per frame, temporal roll, time averaging, pooler), with
  ``L = 40`` text tokens (``max_text_len``), as in the spec's FLOP table.
* **SViTT** -- one clip-caption pair as retrieval re-ranking scores it: the sparse video
  encoder, the text encoder on a 32-token caption (``max_txt_l`` of pretraining) and the fusion
  layers giving the ITM logit. Variants: ``default`` (the preset: block-sparse attention and
  token keeping), ``dense`` (SViTT's dense baseline: ``sparse_random=None``,
  ``token_keep_rate=1``), ``edge`` (block-sparse only), ``node`` (token keeping only).
* **Video-Panda** -- the STAB and the projector (``encode_videos``): everything that turns
  frames into LLM input tokens. The 7B LLM is never instantiated; its prefill cost for those
  tokens plus a 64-token prompt is given analytically from the config (labelled as such).

Inputs are random (values do not change the cost; Video-Panda frames are square, i.e. the
largest token budget, 273 tokens per frame at 448 px). Frames per clip override each preset's
``num_frames`` (SViTT's relative-position tables, All-in-one's temporal embedding grow with it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from leanvl.config import suggest
from leanvl.registry import create_model, list_models

__all__ = ["VARIANTS", "Workload", "build_workload", "family_of", "llama_prefill_flops"]

ALLINONE_TEXT_LEN = 40
SVITT_TEXT_LEN = 32
VIDEOPANDA_PROMPT_TOKENS = 64

VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "allinone": {"default": {}, "no_roll": {"temporal_roll": False}},
    "svitt": {
        "default": {},
        "dense": {"sparse_random": None, "token_keep_rate": 1.0},
        "edge": {"token_keep_rate": 1.0},
        "node": {"sparse_random": None},
        # the default model (edge + node sparsity) on FlexAttention instead of block gathers:
        # compiled on GPU; CPU runs the eager reference and has no backward
        "flex": {"attention_backend": "flex"},
    },
    "videopanda": {"default": {}},
}


@dataclass
class Workload:
    """A model ready to benchmark and the forward to measure.

    Attributes:
        name: preset name.
        family: model family (``allinone``, ``svitt``, ``videopanda``).
        variant: a key of ``VARIANTS[family]``.
        model: the model, on the target device and dtype.
        forward: runs the measured work once on fixed inputs and returns its outputs.
        component_of: parameter name -> component name (parameter and FLOP attribution).
        tokens: outputs of ``forward`` -> token counts at each stage (per clip).
        analytic: outputs of ``forward`` -> extra analytic figures (Video-Panda's LLM prefill).
        uses_flex: the forward calls FlexAttention (torch's FlopCounterMode cannot run it, so
            the FLOP cross-check is skipped).
        batch, frames: clips per call and frames per clip.
    """

    name: str
    family: str
    variant: str
    model: nn.Module
    forward: Callable[[], Any]
    component_of: Callable[[str], str]
    tokens: Callable[[Any], dict[str, Any]]
    batch: int
    frames: int
    analytic: Callable[[Any], dict[str, Any]] | None = None
    uses_flex: bool = False


def family_of(name: str) -> str:
    """Family of a registered preset (``allinone_b`` -> ``allinone``).

    Raises:
        KeyError: ``name`` is not a registered preset (with the nearest names suggested).
        ValueError: the preset belongs to a family without a benchmark workload.
    """
    presets = list_models()
    if name not in presets:
        raise KeyError(f"unknown model {name!r}{suggest(name, presets)} (leanvl models lists them)")
    family = name.split("_", 1)[0]
    if family not in VARIANTS:
        raise ValueError(f"model {name!r}: no benchmark workload for its family {family!r}")
    return family


def _grouping(groups: dict[str, str]) -> Callable[[str], str]:
    def component_of(param_name: str) -> str:
        top = param_name.split(".", 1)[0]
        return groups.get(top, top)

    return component_of


# --------------------------------------------------------------------------------- All-in-one
_ALLINONE_GROUPS = {
    "text_embeddings": "embeddings",
    "token_type_embeddings": "embeddings",
    "transformer": "transformer",
    "pooler": "pooler",
}


def _allinone(model: nn.Module, batch: int, frames: int, device, dtype) -> dict[str, Any]:
    cfg = model.config
    size = cfg.image_size
    video = torch.randn(batch, frames, 3, size, size, device=device, dtype=dtype)
    ids = torch.randint(1000, 2000, (batch, ALLINONE_TEXT_LEN), device=device)
    mask = torch.ones_like(ids)

    def tokens(out) -> dict[str, Any]:
        visual = cfg.visual_len
        return {
            "text": ALLINONE_TEXT_LEN,
            "visual_per_frame": visual,
            "sequence_per_frame": ALLINONE_TEXT_LEN + visual,
            "sequences": frames,
            "transformer_tokens": frames * (ALLINONE_TEXT_LEN + visual),
        }

    return {
        "forward": lambda: model(video, ids, mask),
        "tokens": tokens,
        "groups": _ALLINONE_GROUPS,
    }


# -------------------------------------------------------------------------------------- SViTT
_SVITT_GROUPS = {
    "vision": "vision",
    "vision_norm": "vision",
    "text_embeddings": "text",
    "text": "text+fusion",
    "mlm_head": "heads",
    "vision_proj": "heads",
    "text_proj": "heads",
    "itm_head": "heads",
    "temp": "heads",
}


def _svitt(model: nn.Module, batch: int, frames: int, device, dtype) -> dict[str, Any]:
    cfg = model.config
    size = cfg.image_size
    video = torch.randn(batch, frames, 3, size, size, device=device, dtype=dtype)
    ids = torch.randint(1000, 2000, (batch, SVITT_TEXT_LEN), device=device)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    generator = torch.Generator(device=device).manual_seed(0)

    def forward():
        generator.manual_seed(0)  # same block tables every call
        out = model.encode_video(video, generator=generator)
        text = model.encode_text(ids, mask)
        return out, model.itm_logits(text, out.tokens)

    def tokens(result) -> dict[str, Any]:
        out = result[0]
        stages: dict[str, Any] = {"video_in": 1 + frames * cfg.grid**2}
        for layer, kept in zip(cfg.token_drop_layers, out.kept_token_idx, strict=False):
            stages[f"after_layer_{layer}"] = 1 + kept.shape[1]
        stages["into_fusion"] = out.tokens.shape[1]
        stages["text"] = SVITT_TEXT_LEN
        return stages

    return {"forward": forward, "tokens": tokens, "groups": _SVITT_GROUPS}


# -------------------------------------------------------------------------------- Video-Panda
def llama_prefill_flops(arch: Any, tokens: int) -> dict[str, int]:
    """Analytic FLOPs of one causal prefill of ``tokens`` tokens through a Llama decoder.

    ``2 * tokens`` per weight of every projection and the LM head (``linear``) plus causal
    attention ``2 * layers * width * tokens^2`` (``QKᵀ`` and ``AV`` over the lower triangle,
    ``tokens^2 / 2`` scores each, 4 FLOPs per score and channel).

    Args:
        arch: a ``LlamaArchitecture`` (hidden, intermediate, layers, heads, kv heads, vocab).
        tokens: sequence length.
    """
    d, ffn, layers = arch.hidden_size, arch.intermediate_size, arch.num_hidden_layers
    kv = d * arch.num_key_value_heads // arch.num_attention_heads
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * ffn  # q, o, k, v, gate/up/down
    linear = 2 * tokens * (layers * per_layer + d * arch.vocab_size)
    attention = 2 * layers * d * tokens * tokens
    return {"linear": linear, "attention": attention, "total": linear + attention}


def _videopanda(model: nn.Module, batch: int, frames: int, device, dtype) -> dict[str, Any]:
    from leanvl.models.videopanda import LlamaArchitecture

    cfg = model.config
    size = cfg.image_size
    pixels = torch.randn(batch, frames, 3, size, size, device=device, dtype=dtype)
    mask = torch.ones(batch, frames, 1, size, size, device=device, dtype=dtype)
    clip = torch.cat([pixels, mask], dim=2)
    arch = cfg.llm if cfg.llm is not None else LlamaArchitecture()
    if isinstance(arch, dict):
        arch = LlamaArchitecture(**arch)

    def tokens(result) -> dict[str, Any]:
        per_frame = [len(t) for t in result[0][:frames]]
        return {
            "patches_per_frame": (size // cfg.patch_size) ** 2,
            "per_frame": per_frame[0] if len(set(per_frame)) == 1 else per_frame,
            "visual_into_llm": sum(per_frame),
            "llm_input_with_prompt": sum(per_frame) + VIDEOPANDA_PROMPT_TOKENS,
        }

    def analytic(result) -> dict[str, Any]:
        n = sum(len(t) for t in result[0][:frames]) + VIDEOPANDA_PROMPT_TOKENS
        label = "config.llm" if cfg.llm is not None else "Vicuna-7B v1.5 (LlamaArchitecture())"
        return {"llm": label, "llm_prefill_flops": llama_prefill_flops(arch, n), "tokens": n}

    return {
        "forward": lambda: model.encode_videos(clip),
        "tokens": tokens,
        "groups": {"stab": "stab", "projector": "projector", "llm": "llm"},
        "analytic": analytic,
    }


_BUILDERS = {"allinone": _allinone, "svitt": _svitt, "videopanda": _videopanda}


def build_workload(
    name: str,
    frames: int,
    batch: int = 1,
    variant: str = "default",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    model: nn.Module | None = None,
) -> Workload:
    """Build preset ``name`` for ``frames`` frames (variant overrides applied) and its inputs.

    Args:
        name: a registered preset (``leanvl.list_models()``).
        frames: frames per clip (sets the preset's ``num_frames``).
        batch: clips per forward.
        variant: a key of ``VARIANTS[family]``.
        device, dtype: where and in which precision to run.
        model: reuse an already built model of the same configuration (skips construction).
    """
    family = family_of(name)
    if variant not in VARIANTS[family]:
        raise ValueError(
            f"variant {variant!r} does not exist for {family} models; expected one of "
            f"{sorted(VARIANTS[family])}"
        )
    if model is None:
        overrides = {"num_frames": frames, **VARIANTS[family][variant]}
        model = create_model(name, **overrides)
    model = model.to(device=device, dtype=dtype).eval()
    parts = _BUILDERS[family](model, batch, frames, torch.device(device), dtype)
    groups = parts["groups"]
    return Workload(
        name=name,
        family=family,
        variant=variant,
        model=model,
        forward=parts["forward"],
        component_of=_grouping(groups),
        tokens=parts["tokens"],
        batch=batch,
        frames=frames,
        analytic=parts.get("analytic"),
        uses_flex=getattr(model.config, "attention_backend", "") == "flex",
    )


def config_summary(model: nn.Module) -> dict[str, Any]:
    """The model's config as a JSON-friendly dict (for the record)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return {}
    return {
        k: v if isinstance(v, int | float | str | bool | type(None)) else str(v)
        for k, v in dataclasses.asdict(cfg).items()
    }
