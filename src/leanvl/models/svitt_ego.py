"""SViTT-Ego presets: the SViTT architecture pretrained on EgoClip with EgoNCE.

Valdez et al., "SViTT-Ego: A Sparse Video-Text Transformer for Egocentric Video", CVPR 2024
workshops (arXiv 2406.09462). SViTT-Ego keeps SViTT's sparse video-text model (edge and node
sparsity in the video encoder; Li et al., CVPR 2023) and changes the pretraining: EgoClip
narrations instead of WebVid captions, and EgoNCE (:func:`leanvl.losses.ego_nce`, with the
scene-aware batches of :class:`leanvl.data.samplers.SceneGroupedBatchSampler`) instead of the
ITC InfoNCE term. The model is therefore a plain :class:`leanvl.models.svitt.SViTT`; only the
training recipe differs. The official release ships the SViTT code files and one checkpoint,
so the SViTT key layout is assumed for it (spec svitt.md §13, inferred).
"""

from __future__ import annotations

from leanvl.models.svitt import SViTT, SViTTConfig
from leanvl.registry import register_model

__all__ = ["svitt_ego", "svitt_ego_tiny"]


@register_model
def svitt_ego(**overrides) -> SViTT:
    """SViTT-Ego: SViTT-B (BEiT-B + BERT-base), 4 frames, block 56, keep 0.7 at [3,6,9]; EgoNCE."""
    defaults = dict(num_frames=4, sparse_random=3, sparse_local=1, attn_block_size=56,
                    token_keep_rate=0.7, token_drop_layers=(3, 6, 9))  # fmt: skip
    return SViTT(SViTTConfig(**{**defaults, **overrides}))


@register_model
def svitt_ego_tiny(**overrides) -> SViTT:
    """Tiny SViTT-Ego for tests and demos: width 96, 4+5 layers, 64^2 patch 8, 4 frames."""
    defaults = dict(
        image_size=64, patch_size=8, num_frames=4, vision_width=96, vision_layers=4,
        vision_heads=3, vision_mlp=384, attn_block_size=16, token_drop_layers=(1, 2),
        text_width=96, text_layers=5, text_heads=3, text_mlp=384, fusion_layer=2,
        max_text_positions=64, embed_dim=64, xmodal_drop_layers=(3,),
    )  # fmt: skip
    return SViTT(SViTTConfig(**{**defaults, **overrides}))
