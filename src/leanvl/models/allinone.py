"""All-in-one: one shared ViT for text, video and text+video, with Temporal Token Rolling.

Implements Wang et al., "All in One: Exploring Unified Video-Language Pre-training" (CVPR 2023,
arXiv 2203.07303), following the official code (showlab/all-in-one, commit ae0e288) as described
in ``shared/specs/allinone.md``. Outputs match the official ``AllinoneTransformerSS`` on the golden
fixtures (``tests/parity/test_allinone_parity.py``).

Layout of one forward (joint text+video pass):

* text: BERT-style embedding (word + type-0 + learned position, LayerNorm eps 1e-12) plus the
  modality embedding row 0; repeated once per frame;
* video: every frame is patchified, gets spatial position embeddings (and, except for the
  distilled ViT, the temporal embedding of its frame), a CLS (and DIST) token and the modality
  embedding row 1;
* each frame is one sequence ``[text ; CLS (, DIST) ; patches]``; before every block the visual
  tokens are rolled across frames (:mod:`leanvl.layers.temporal_roll`);
* after the final LayerNorm every token is averaged over time; ``cls_feats`` is
  ``tanh(pooler(text CLS))``.

Submodule names are the official ones (``text_embeddings``, ``token_type_embeddings``,
``transformer.*``, ``pooler.dense``, ``itm_score.fc``, ``mlm_score.*``, ``txt_proj``,
``vid_proj``, ``vqa_classifier``, ``mc_vqa_classifier``), so converted checkpoints map key for key.
``rank_output`` is not a module: the official one aliases ITM row 1, :meth:`AllInOne.rank_scores`
reads that row directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from leanvl.layers.temporal_roll import temporal_roll
from leanvl.layers.vit import PatchEmbed, VitBlock, key_padding_mask
from leanvl.registry import register_family, register_model

__all__ = ["AllInOne", "AllInOneConfig", "AllInOneOutput"]

PATCH_ORDERS = ("raster", "random")
QA_HEADS = ("openend", "vqav2")
FUSION_POOLS = ("text_cls", "text_cls+video")
VTC_POOLS = ("cls", "mean")


@dataclass
class AllInOneConfig:
    """Configuration of an All-in-one model. Defaults are All-in-one-B pretraining.

    Attributes:
        hidden_size: token width H (192 Ti, 384 S, 768 B).
        depth: number of transformer blocks (12 in every released model).
        num_heads: attention heads (3 Ti, 6 S, 12 B).
        mlp_ratio: MLP hidden width / H.
        distilled: DeiT distilled ViT (the S variant): a DIST token after CLS, ``2 + P`` visual
            tokens per frame, and the temporal embedding is kept as a parameter but never added
            (official behaviour).
        image_size: frame side in pixels; inputs must be exactly this size.
        patch_size: patch side in pixels.
        num_frames: frames per clip T the temporal embedding is sized for; a forward may use
            fewer frames (the first rows of the temporal embedding are used).
        vocab_size: text vocabulary (30522 for BERT-uncased).
        max_text_len: rows of the learned text position table; longest text accepted.
        drop_rate: dropout of the embeddings, attention projection and MLP (training only).
        drop_path_rate: stochastic depth, rising linearly from 0 to this over the blocks.
        temporal_roll: roll visual tokens across frames before every block of the joint pass.
            Off = the same model without any inter-frame exchange (ablation baseline).
        roll_fold_div: ``visual_len // roll_fold_div`` positions roll each way (8 officially).
        patch_order: ``"raster"`` (deterministic, row-major patches) or ``"random"`` (the
            official per-frame random permutation, drawn with ``torch.multinomial``; pass a
            ``generator`` to the forward to make it reproducible). An explicit ``patch_order``
            tensor given to the forward overrides both.
        mlm_head: build the masked-language-modelling head ``mlm_score``.
        itm_head: build the video-text matching head ``itm_score`` (also gives
            :meth:`AllInOne.rank_scores`, the official ``rank_output``).
        vtc_dim: width of the contrastive projections ``txt_proj``/``vid_proj`` (512 in the
            official fine-tunes); 0 = no projections.
        qa_head: layout of the open-ended QA classifier: ``"openend"`` (MSRVTT-QA, MSVD-QA,
            TGIF-FrameQA, action recognition: Dropout 0.5, H -> H/2, LN, GELU, -> answers) or
            ``"vqav2"`` (H -> 2H, LN, GELU, -> answers).
        num_answers: size of the QA answer vocabulary; 0 = no QA head.
        mc_vqa_head: build ``mc_vqa_classifier`` (TGIF action/transition, TVQA option scores).
        init_std: standard deviation of the random initialisation of Linear/Embedding weights.
        fusion_pool: what the pooler reads in the joint pass: ``"text_cls"`` (official: the
            text [CLS] token) or ``"text_cls+video"`` (leanvl option, off by default: the text
            [CLS] plus the mean of the visual tokens, a direct path from the video to every
            head that helps a small model trained from scratch).
        vtc_pool: the VTC embedding of :meth:`AllInOne.encode_text` / ``encode_video``:
            ``"cls"`` (official) or ``"mean"`` (leanvl option: mean of the valid tokens).
    """

    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    distilled: bool = False
    image_size: int = 224
    patch_size: int = 16
    num_frames: int = 3
    vocab_size: int = 30522
    max_text_len: int = 40
    drop_rate: float = 0.1
    drop_path_rate: float = 0.1
    temporal_roll: bool = True
    roll_fold_div: int = 8
    patch_order: str = "raster"
    mlm_head: bool = True
    itm_head: bool = True
    vtc_dim: int = 0
    qa_head: str = "openend"
    num_answers: int = 0
    mc_vqa_head: bool = False
    init_std: float = 0.02
    fusion_pool: str = "text_cls"
    vtc_pool: str = "cls"

    def __post_init__(self) -> None:
        def fail(field: str, why: str) -> None:
            raise ValueError(f"AllInOneConfig.{field}={getattr(self, field)!r}: {why}")

        if self.hidden_size % self.num_heads:
            fail("hidden_size", f"must be divisible by num_heads={self.num_heads}")
        if self.image_size % self.patch_size:
            fail("image_size", f"must be a multiple of patch_size={self.patch_size}")
        for name in ("depth", "num_frames", "vocab_size", "max_text_len", "patch_size"):
            if getattr(self, name) < 1:
                fail(name, "must be >= 1")
        if self.roll_fold_div < 2:
            fail("roll_fold_div", "must be >= 2")
        if self.patch_order not in PATCH_ORDERS:
            fail("patch_order", f"expected one of {PATCH_ORDERS}")
        if self.fusion_pool not in FUSION_POOLS:
            fail("fusion_pool", f"expected one of {FUSION_POOLS}")
        if self.vtc_pool not in VTC_POOLS:
            fail("vtc_pool", f"expected one of {VTC_POOLS}")
        if self.qa_head not in QA_HEADS:
            fail("qa_head", f"expected one of {QA_HEADS}")
        if self.num_answers < 0 or self.vtc_dim < 0:
            fail("num_answers" if self.num_answers < 0 else "vtc_dim", "must be >= 0")

    @property
    def grid_size(self) -> int:
        """Patches per frame side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patches per frame P."""
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        """Visual tokens before the patches: CLS, plus DIST for the distilled ViT."""
        return 2 if self.distilled else 1

    @property
    def visual_len(self) -> int:
        """Visual tokens per frame l (197 at 224/16, 198 distilled)."""
        return self.num_prefix_tokens + self.num_patches


@dataclass
class AllInOneOutput:
    """Result of the joint text+video pass, every token averaged over frames.

    Attributes:
        text_feats: (B, L, H) text token features.
        video_feats: (B, l, H) visual token features; index 0 is the visual CLS.
        raw_cls_feats: (B, H) text [CLS] feature before the pooler (plus the mean visual token
            with ``fusion_pool="text_cls+video"``).
        cls_feats: (B, H) ``tanh(pooler(raw_cls_feats))``, the input of every head but MLM.
    """

    text_feats: torch.Tensor
    video_feats: torch.Tensor
    raw_cls_feats: torch.Tensor
    cls_feats: torch.Tensor


class TextEmbedding(nn.Module):
    """BERT embedding layer: word + token-type 0 + learned position, LayerNorm, dropout."""

    def __init__(self, vocab_size: int, dim: int, max_len: int, drop: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, dim)
        self.token_type_embeddings = nn.Embedding(2, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(drop)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Embed token ids (B, L) -> (B, L, dim)."""
        x = self.word_embeddings(ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings.weight[: ids.shape[1]]
        return self.dropout(self.LayerNorm(x))


class VideoTransformer(nn.Module):
    """The shared ViT: patch/position/temporal embeddings, the blocks and the final norm."""

    def __init__(self, cfg: AllInOneConfig) -> None:
        super().__init__()
        dim = cfg.hidden_size
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if cfg.distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.visual_len, dim))
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, dim))
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            VitBlock(dim, cfg.num_heads, cfg.mlp_ratio, drop=cfg.drop_rate, drop_path=p)
            for p in rates
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def embed(self, frames: torch.Tensor, num_frames: int, order: torch.Tensor | None):
        """Visual tokens of frames (B*T, 3, S, S) -> (B*T, l, H), before the modality embedding.

        ``order`` (B*T, P) permutes each frame's patches together with their spatial position
        embeddings (None = raster order).
        """
        cfg = self.cfg
        k = cfg.num_prefix_tokens
        patches = self.patch_embed(frames)  # (B*T, P, H)
        bt, p, dim = patches.shape
        pos = self.pos_embed[0, k:]  # (P, H) spatial
        if order is not None:
            patches = patches.gather(1, order[..., None].expand(-1, -1, dim))
            pos = pos[order]  # (B*T, P, H)
        pos = pos.view(-1, num_frames, p, dim) if order is not None else pos[None, None]
        if not cfg.distilled:  # the distilled ViT never adds the temporal embedding
            pos = pos + self.temporal_embed[0, :num_frames, None, :]
        patches = patches.view(bt // num_frames, num_frames, p, dim) + pos
        prefix = [self.cls_token] + ([self.dist_token] if cfg.distilled else [])
        prefix = torch.cat(prefix, dim=1) + self.pos_embed[:, :k]
        x = torch.cat([prefix.expand(bt, -1, -1), patches.reshape(bt, p, dim)], dim=1)
        return self.pos_drop(x)

    def encode(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        num_frames: int,
        roll_start: int | None,
    ) -> torch.Tensor:
        """Blocks + final norm on (B*T, N, H); rolls tokens from ``roll_start`` on (None = no
        roll) before every block, then averages every token over the T frames -> (B, N, H)."""
        for block in self.blocks:
            if roll_start is not None:
                x = temporal_roll(
                    x, num_frames, visual_start=roll_start, fold_div=self.cfg.roll_fold_div
                )
            x = block(x, mask)
        x = self.norm(x)
        return x.view(-1, num_frames, *x.shape[1:]).mean(dim=1)


class Pooler(nn.Module):
    """``tanh(dense(x))`` on the text [CLS] feature."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool (B, H) -> (B, H)."""
        return torch.tanh(self.dense(x))


class ItmHead(nn.Module):
    """Video-text matching logits (index 1 = match)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, 2)."""
        return self.fc(x)


class MlmTransform(nn.Module):
    """Dense -> GELU -> LayerNorm(eps 1e-12), BERT's prediction-head transform."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform token features (..., H)."""
        return self.LayerNorm(F.gelu(self.dense(x)))


class MlmHead(nn.Module):
    """Masked-token logits: transform, untied bias-free decoder, separate output bias."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.transform = MlmTransform(dim)
        self.decoder = nn.Linear(dim, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., vocab_size)."""
        return self.decoder(self.transform(x)) + self.bias


def _qa_head(layout: str, dim: int, num_answers: int) -> nn.Sequential:
    if layout == "vqav2":
        return nn.Sequential(
            nn.Linear(dim, 2 * dim),
            nn.LayerNorm(2 * dim),
            nn.GELU(),
            nn.Linear(2 * dim, num_answers),
        )
    return nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(dim, dim // 2),
        nn.LayerNorm(dim // 2),
        nn.GELU(),
        nn.Linear(dim // 2, num_answers),
    )


def _mc_vqa_head(dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(0.1), nn.Linear(dim, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 1)
    )


@register_family("allinone", AllInOneConfig)
class AllInOne(nn.Module):
    """All-in-one video-language model with its pretraining and downstream heads.

    Inputs everywhere: ``video`` float (B, T, 3, S, S), already normalised (ImageNet mean/std
    for the released models); ``text_ids`` int (B, L) BERT ids, ``text_mask`` (B, L) with
    1/True on real tokens.

    Args:
        config: the :class:`AllInOneConfig`.
    """

    def __init__(self, config: AllInOneConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.text_embeddings = TextEmbedding(
            config.vocab_size, dim, config.max_text_len, config.drop_rate
        )
        self.token_type_embeddings = nn.Embedding(2, dim)  # modality: 0 text, 1 video
        self.transformer = VideoTransformer(config)
        self.pooler = Pooler(dim)
        self.itm_score = ItmHead(dim) if config.itm_head else None
        self.mlm_score = MlmHead(dim, config.vocab_size) if config.mlm_head else None
        self.txt_proj = nn.Linear(dim, config.vtc_dim) if config.vtc_dim else None
        self.vid_proj = nn.Linear(dim, config.vtc_dim) if config.vtc_dim else None
        self.vqa_classifier = (
            _qa_head(config.qa_head, dim, config.num_answers) if config.num_answers else None
        )
        self.mc_vqa_classifier = _mc_vqa_head(dim) if config.mc_vqa_head else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation as the official code does it: Linear/Embedding N(0, std),
        biases 0, LayerNorm (1, 0); CLS/DIST/position tokens truncated-normal std 0.02;
        temporal embedding 0."""
        std = self.config.init_std
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        vit = self.transformer
        for p in [vit.cls_token, vit.pos_embed] + (
            [vit.dist_token] if self.config.distilled else []
        ):
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(vit.temporal_embed)
        if self.mlm_score is not None:
            nn.init.zeros_(self.mlm_score.bias)

    # ------------------------------------------------------------------ inputs and embeddings
    def _check_video(self, video: torch.Tensor) -> tuple[int, int]:
        cfg = self.config
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video: expected (B, T, 3, H, W), got {tuple(video.shape)}")
        b, t, _, h, w = video.shape
        if (h, w) != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"video: frames are {h}x{w} but config.image_size={cfg.image_size} "
                "(All-in-one has no position-embedding interpolation; resize the frames)"
            )
        if not 1 <= t <= cfg.num_frames:
            raise ValueError(
                f"video: {t} frames, config.num_frames={cfg.num_frames} is the maximum"
            )
        return b, t

    def _check_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor | None) -> None:
        if text_ids.ndim != 2:
            raise ValueError(f"text_ids: expected (B, L), got {tuple(text_ids.shape)}")
        if text_ids.shape[1] > self.config.max_text_len:
            raise ValueError(
                f"text_ids: length {text_ids.shape[1]} exceeds "
                f"config.max_text_len={self.config.max_text_len}"
            )
        if text_mask is not None and text_mask.shape != text_ids.shape:
            raise ValueError(
                f"text_mask: shape {tuple(text_mask.shape)} != text_ids {tuple(text_ids.shape)}"
            )

    def _patch_order(
        self,
        num_seqs: int,
        patch_order: torch.Tensor | None,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> torch.Tensor | None:
        p = self.config.num_patches
        if patch_order is not None:
            order = patch_order.reshape(-1, patch_order.shape[-1]).to(
                device=device, dtype=torch.long
            )
            expected = torch.arange(p, device=device).expand(order.shape[0], -1)
            if order.shape != (num_seqs, p) or not torch.equal(order.sort(dim=1).values, expected):
                raise ValueError(
                    f"patch_order: expected one permutation of range({p}) per frame "
                    f"({num_seqs} rows), got shape {tuple(patch_order.shape)}"
                )
            return order
        if self.config.patch_order == "raster":
            return None
        return self.draw_patch_order(num_seqs, generator=generator).to(device)

    def draw_patch_order(
        self, num_seqs: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw the official random patch order: (num_seqs, P), one permutation per frame.

        Like the official ``visual_embed``: one ``torch.multinomial`` over uniform weights per
        frame, frame after frame, on the CPU; a generator seeded like the official global RNG
        (``torch.manual_seed``) reproduces its permutations exactly.
        """
        p = self.config.num_patches
        ones = torch.ones(p)
        return torch.stack(
            [torch.multinomial(ones, p, generator=generator) for _ in range(num_seqs)]
        )

    def embed_text(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Text tokens (B, L) -> (B, L, H), modality embedding (row 0) included."""
        self._check_text(text_ids, None)
        return self.text_embeddings(text_ids) + self.token_type_embeddings.weight[0]

    def embed_video(
        self,
        video: torch.Tensor,
        *,
        patch_order: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Visual tokens (B*T, l, H) of ``video`` (B, T, 3, S, S), one row per frame
        (``b * T + t``), modality embedding (row 1) included.

        Args:
            video: normalised frames.
            patch_order: optional (B*T, P) or (B, T, P) permutations of each frame's patches
                (e.g. the official draws recorded in a golden fixture).
            generator: RNG of the ``"random"`` patch order.
        """
        b, t = self._check_video(video)
        order = self._patch_order(b * t, patch_order, generator, video.device)
        x = self.transformer.embed(video.flatten(0, 1), t, order)
        return x + self.token_type_embeddings.weight[1]

    # ------------------------------------------------------------------------------ passes
    def forward(
        self,
        video: torch.Tensor,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        *,
        patch_order: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AllInOneOutput:
        """Joint text+video pass (the official ``infer``): per-frame sequences, temporal
        roll before every block, time averaging, pooler.

        Args:
            video: (B, T, 3, S, S) normalised frames.
            text_ids: (B, L) token ids (MLM: the masked ids).
            text_mask: (B, L) 1 on real tokens.
            patch_order: optional explicit per-frame patch permutations (see
                :meth:`embed_video`).
            generator: RNG of ``patch_order="random"``.
        """
        self._check_text(text_ids, text_mask)
        if text_ids.shape[0] != video.shape[0]:
            raise ValueError(f"batch mismatch: video {video.shape[0]}, text {text_ids.shape[0]}")
        visual = self.embed_video(video, patch_order=patch_order, generator=generator)
        return self.forward_embedded(visual, video.shape[1], text_ids, text_mask)

    def forward_embedded(
        self, visual: torch.Tensor, num_frames: int, text_ids: torch.Tensor, text_mask: torch.Tensor
    ) -> AllInOneOutput:
        """Joint pass from visual tokens already computed by :meth:`embed_video`.

        Lets one video be embedded once and paired with many texts (multiple choice,
        ITM retrieval), as the official evaluation does.
        """
        t = num_frames
        seq_len = text_ids.shape[1]
        text = self.embed_text(text_ids).repeat_interleave(t, dim=0)
        x = torch.cat([text, visual], dim=1)
        visual_valid = torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device)
        valid = torch.cat([text_mask.bool().repeat_interleave(t, dim=0), visual_valid], dim=1)
        roll_start = seq_len if self.config.temporal_roll else None
        x = self.transformer.encode(x, key_padding_mask(valid), t, roll_start)
        raw_cls = x[:, 0]
        if self.config.fusion_pool == "text_cls+video":
            raw_cls = raw_cls + x[:, seq_len:].mean(dim=1)
        return AllInOneOutput(
            text_feats=x[:, :seq_len],
            video_feats=x[:, seq_len:],
            raw_cls_feats=raw_cls,
            cls_feats=self.pooler(raw_cls),
        )

    def _project(self, proj: nn.Linear | None, x: torch.Tensor, project: bool, which: str):
        if not project:
            return x
        if proj is None:
            raise ValueError(f"{which}: this model has no VTC projection (config.vtc_dim=0)")
        return proj(x)

    def encode_text(
        self,
        text_ids: torch.Tensor,
        text_mask: torch.Tensor,
        *,
        project: bool = True,
        all_tokens: bool = False,
    ) -> torch.Tensor:
        """Text-only pass for VTC / fast retrieval: (B, D) projected [CLS] embedding.

        The official code runs T identical copies of the text and averages them; one copy gives
        the same result up to float rounding, at 1/T of the cost.

        Args:
            text_ids: (B, L) ids.
            text_mask: (B, L) 1 on real tokens.
            project: apply ``txt_proj`` (D = vtc_dim); False returns H-wide features.
            all_tokens: return every token (B, L, D) instead of token 0.
        """
        self._check_text(text_ids, text_mask)
        x = self.embed_text(text_ids)
        x = self.transformer.encode(x, key_padding_mask(text_mask), 1, None)
        if all_tokens:
            pass
        elif self.config.vtc_pool == "mean":
            w = text_mask.to(x.dtype)[..., None]
            x = (x * w).sum(1) / w.sum(1).clamp(min=1)
        else:
            x = x[:, 0]
        return self._project(self.txt_proj, x, project, "encode_text")

    def encode_video(
        self,
        video: torch.Tensor,
        *,
        project: bool = True,
        all_tokens: bool = False,
        patch_order: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Video-only pass for VTC / fast retrieval: frames run independently (no roll), time
        averaged; (B, D) projected visual-CLS embedding.

        Args:
            video: (B, T, 3, S, S) normalised frames.
            project: apply ``vid_proj`` (D = vtc_dim); False returns H-wide features.
            all_tokens: return every token (B, l, D) instead of token 0.
            patch_order: optional explicit patch permutations (token 0 does not depend on them).
            generator: RNG of ``patch_order="random"``.
        """
        visual = self.embed_video(video, patch_order=patch_order, generator=generator)
        x = self.transformer.encode(visual, None, video.shape[1], None)
        if not all_tokens:
            x = x.mean(dim=1) if self.config.vtc_pool == "mean" else x[:, 0]
        return self._project(self.vid_proj, x, project, "encode_video")

    # -------------------------------------------------------------------------------- heads
    def _head(self, name: str, flag: str) -> nn.Module:
        head = getattr(self, name)
        if head is None:
            raise ValueError(f"{name}: this model was built without it (config.{flag})")
        return head

    def itm_logits(self, cls_feats: torch.Tensor) -> torch.Tensor:
        """(B, 2) video-text matching logits from ``cls_feats``; index 1 = match."""
        return self._head("itm_score", "itm_head=False")(cls_feats)

    def rank_scores(self, cls_feats: torch.Tensor) -> torch.Tensor:
        """(B,) ranking score = ITM "match" logit (the official ``rank_output``, which shares
        its storage with ITM row 1). Used for multiple choice and ITM retrieval."""
        fc = self._head("itm_score", "itm_head=False").fc
        return cls_feats @ fc.weight[1] + fc.bias[1]

    def mlm_logits(self, text_feats: torch.Tensor) -> torch.Tensor:
        """(B, L, vocab) masked-token logits from the ``text_feats`` of an MLM pass."""
        return self._head("mlm_score", "mlm_head=False")(text_feats)

    def qa_logits(self, cls_feats: torch.Tensor) -> torch.Tensor:
        """(B, num_answers) open-ended QA / action-recognition logits."""
        return self._head("vqa_classifier", "num_answers=0")(cls_feats)

    def mc_vqa_scores(self, cls_feats: torch.Tensor) -> torch.Tensor:
        """(B,) option scores of the MC-VQA head (TGIF action/transition, TVQA)."""
        return self._head("mc_vqa_classifier", "mc_vqa_head=False")(cls_feats)[:, 0]

    def mc_scores(
        self,
        video: torch.Tensor,
        option_ids: torch.Tensor,
        option_mask: torch.Tensor,
        *,
        head: str = "rank",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Multiple choice: score every option text against its video; argmax = answer.

        The video is embedded once and paired with each option (with ``patch_order="random"``
        all options of a video therefore share one draw; the official code draws per copy).

        Args:
            video: (B, T, 3, S, S) normalised frames.
            option_ids: (B, K, L) token ids of the K options.
            option_mask: (B, K, L) 1 on real tokens.
            head: ``"rank"`` (ITM match logit: MSRVTT/LSMDC/Ego4D MC, zero-shot capable) or
                ``"mc_vqa"`` (the MC-VQA classifier).

        Returns:
            (B, K) scores.
        """
        if head not in ("rank", "mc_vqa"):
            raise ValueError(f"mc_scores: head={head!r}, expected 'rank' or 'mc_vqa'")
        if option_ids.ndim != 3 or option_ids.shape[0] != video.shape[0]:
            raise ValueError(
                f"option_ids: expected (B={video.shape[0]}, K, L), got {tuple(option_ids.shape)}"
            )
        b, k, seq_len = option_ids.shape
        t = video.shape[1]
        visual = self.embed_video(video, generator=generator)  # (B*T, l, H)
        visual = visual.view(b, 1, t, *visual.shape[1:]).expand(-1, k, -1, -1, -1)
        out = self.forward_embedded(
            visual.reshape(b * k * t, *visual.shape[3:]),
            t,
            option_ids.reshape(b * k, seq_len),
            option_mask.reshape(b * k, seq_len),
        )
        score = self.rank_scores if head == "rank" else self.mc_vqa_scores
        return score(out.cls_feats).view(b, k)


# ------------------------------------------------------------------------------------ presets
@register_model
def allinone_ti(**overrides) -> AllInOne:
    """All-in-one-Ti: DeiT-Ti backbone (H 192, 3 heads, 12 blocks), 11.4M backbone params."""
    return AllInOne(AllInOneConfig(**{"hidden_size": 192, "num_heads": 3, **overrides}))


@register_model
def allinone_s(**overrides) -> AllInOne:
    """All-in-one-S: distilled DeiT-S backbone (H 384, 6 heads, DIST token), 33.6M params."""
    cfg = {"hidden_size": 384, "num_heads": 6, "distilled": True, **overrides}
    return AllInOne(AllInOneConfig(**cfg))


@register_model
def allinone_b(**overrides) -> AllInOne:
    """All-in-one-B: ViT-B/16 backbone (H 768, 12 heads, 12 blocks), 109.9M backbone params."""
    return AllInOne(AllInOneConfig(**overrides))


@register_model
def allinone_tiny(**overrides) -> AllInOne:
    """Tiny All-in-one for tests and the demo (H 64, 2 blocks, 64x64 frames, all heads)."""
    cfg = {
        "hidden_size": 64,
        "depth": 2,
        "num_heads": 2,
        "image_size": 64,
        "patch_size": 16,
        "vtc_dim": 32,
        "num_answers": 16,
        "mc_vqa_head": True,
        **overrides,
    }
    return AllInOne(AllInOneConfig(**cfg))
