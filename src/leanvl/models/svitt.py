"""SViTT: a sparse video-text transformer (ITC + ITM + MLM pretraining model).

Li, Niu, Gupta et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers", CVPR 2023
(arXiv 2304.08809), built on Singularity / ALBEF. A BEiT video encoder attends jointly over all
space-time patches with a 3D relative position bias and two kinds of sparsity:

* edge sparsity -- block-sparse attention (local + random blocks, dense CLS row), see
  :mod:`leanvl.layers.block_sparse`;
* node sparsity -- after the layers in ``token_drop_layers`` only the ``ceil(rate * n)`` tokens
  with the highest CLS attention survive, see :mod:`leanvl.layers.token_keep`.

A BERT text encoder runs its first ``fusion_layer`` layers on text; the rest cross-attend to the
video tokens (optionally pruning them by text-[CLS] attention). With ``sparse_random=None`` and
``token_keep_rate=1`` the model is exactly the dense baseline. The family also holds the VQA
model (:class:`SViTTVQA`, answer decoder + answer-list ranking) and the official retrieval scoring
(:func:`retrieval_scores`). Deviations from and quirks of the official code are listed in
``docs/models/svitt.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from leanvl.layers.bert import BertEmbeddings, BertEncoder, FusionResult, MLMHead, padding_bias
from leanvl.layers.block_sparse import BACKENDS, BlockSparse
from leanvl.layers.sparse_beit import SparseBEiTConfig, SparseVideoBEiT, VideoOutput
from leanvl.registry import register_family, register_model

__all__ = [
    "SViTT",
    "SViTTConfig",
    "SViTTVQA",
    "RetrievalScores",
    "TextOutput",
    "VideoOutput",
    "itc_loss",
    "mlm_mask",
    "retrieval_scores",
    "split_clips",
    "svitt_base",
    "svitt_base_vqa",
    "svitt_tiny",
    "svitt_tiny_vqa",
]


@dataclass
class SViTTConfig:
    """Configuration of :class:`SViTT` (defaults: the 4-frame stage-1 pretraining model).

    Attributes:
        image_size: frame height = width the model accepts (224).
        patch_size: square patch side of the per-frame Conv2d patch embedding (16).
        num_frames: frames T the relative position tables cover; inputs may have <= T frames.
        vision_width: BEiT hidden size (768).
        vision_layers: BEiT layers (12).
        vision_heads: BEiT attention heads (12).
        vision_mlp: BEiT MLP hidden size (3072).
        layer_scale_init: initial value of the per-channel layer-scale gammas (0.1); 0 builds
            blocks without layer scale (as BEiT does).
        drop_path_rate: stochastic depth, linear over depth from 0 (training only).
        sparse_random: random key blocks per query block; ``None`` = dense attention.
        sparse_local: local key blocks per query block (odd; 1 = its own block).
        attn_block_size: tokens per attention block (56 = 4 patch rows at 224^2).
        mask_block_padding: mask the zero-padded keys of the last block (a fix; ``False``
            reproduces the official model where they take softmax mass).
        mirror_local_values: with ``sparse_local > 1``, take the values and bias positions of
            local offset ``r`` from block ``m - r`` (the official quirk; keys from ``m + r``).
            No effect at ``sparse_local = 1``.
        attention_backend: ``"gather"`` (pure PyTorch), ``"flex"`` (FlexAttention) or
            ``"dense"`` (ignore the sparsity pattern); dense attention when ``sparse_random=None``.
        token_keep_rate: fraction of visual tokens kept at each drop layer (1 = no node sparsity).
        token_drop_layers: 0-based video layers after which tokens are dropped.
        token_keep_strategy: ``"cls_attn"`` (head-mean CLS attention) or ``"random"``.
        vocab_size: text vocabulary size (bert-base-uncased: 30522).
        text_width: BERT hidden size (768).
        text_layers: BERT layers in total, text-only plus fusion (12).
        text_heads: BERT attention heads (12).
        text_mlp: BERT MLP hidden size (3072).
        fusion_layer: first BERT layer with cross-attention to the video (9).
        max_text_positions: BERT absolute position embeddings (512).
        type_vocab_size: BERT token-type embeddings (2; only type 0 is used).
        text_dropout: BERT hidden and attention dropout (training only).
        xmodal_keep_rate: fraction of video tokens kept by text-guided pruning (1 = off, the
            behaviour of the released code).
        xmodal_drop_layers: BERT layers (counted over all layers) after whose cross-attention
            video tokens are pruned.
        embed_dim: ITC embedding size (256).
        temp_init: initial ITC temperature (0.07; clamped to [0.001, 0.5] every forward).
        mlm_head: build the MLM head (pretraining); retrieval checkpoints have none.
        layer_norm_eps: epsilon of every LayerNorm (1e-12).
        decoder_layers: answer-decoder layers of :class:`SViTTVQA` (3; unused by :class:`SViTT`).
    """

    image_size: int = 224
    patch_size: int = 16
    num_frames: int = 4
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp: int = 3072
    layer_scale_init: float = 0.1
    drop_path_rate: float = 0.1
    sparse_random: int | None = 3
    sparse_local: int = 1
    attn_block_size: int = 56
    mask_block_padding: bool = False
    mirror_local_values: bool = True
    attention_backend: str = "gather"
    token_keep_rate: float = 0.7
    token_drop_layers: tuple[int, ...] = (3, 6, 9)
    token_keep_strategy: str = "cls_attn"
    vocab_size: int = 30522
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_mlp: int = 3072
    fusion_layer: int = 9
    max_text_positions: int = 512
    type_vocab_size: int = 2
    text_dropout: float = 0.1
    xmodal_keep_rate: float = 1.0
    xmodal_drop_layers: tuple[int, ...] = (10,)
    embed_dim: int = 256
    temp_init: float = 0.07
    mlm_head: bool = True
    layer_norm_eps: float = 1e-12
    decoder_layers: int = 3

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"SViTTConfig.image_size={self.image_size} is not a multiple of "
                f"patch_size={self.patch_size}"
            )
        if self.attention_backend not in BACKENDS:
            raise ValueError(
                f"SViTTConfig.attention_backend={self.attention_backend!r}: expected one of "
                f"{BACKENDS}"
            )
        if not 0 < self.token_keep_rate <= 1:
            raise ValueError(f"SViTTConfig.token_keep_rate={self.token_keep_rate}: not in (0, 1]")
        if not 0 <= self.fusion_layer <= self.text_layers:
            raise ValueError(
                f"SViTTConfig.fusion_layer={self.fusion_layer}: not in [0, {self.text_layers}]"
            )
        bad = [i for i in self.token_drop_layers if not 0 <= i < self.vision_layers]
        if bad:
            raise ValueError(
                f"SViTTConfig.token_drop_layers: {bad} not in [0, {self.vision_layers})"
            )
        bad = [i for i in self.xmodal_drop_layers if not self.fusion_layer <= i < self.text_layers]
        if self.xmodal_keep_rate < 1 and bad:
            raise ValueError(
                f"SViTTConfig.xmodal_drop_layers: {bad} are not fusion layers "
                f"[{self.fusion_layer}, {self.text_layers})"
            )

    @property
    def grid(self) -> int:
        """Patches per frame side (h = w)."""
        return self.image_size // self.patch_size

    def vision_encoder_config(self, pool: bool = True) -> SparseBEiTConfig:
        """The :class:`SparseBEiTConfig` of the video encoder."""
        return SparseBEiTConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_frames=self.num_frames,
            width=self.vision_width,
            depth=self.vision_layers,
            heads=self.vision_heads,
            mlp=self.vision_mlp,
            eps=self.layer_norm_eps,
            layer_scale_init=self.layer_scale_init,
            drop_path_rate=self.drop_path_rate,
            layout=self.layout,
            backend=self.attention_backend,
            keep_rate=self.token_keep_rate,
            drop_layers=tuple(self.token_drop_layers),
            keep_strategy=self.token_keep_strategy,
            pool=pool,
        )

    @property
    def layout(self) -> BlockSparse | None:
        """The edge-sparsity pattern, or None for dense attention."""
        if self.sparse_random is None:
            return None
        return BlockSparse(
            self.attn_block_size,
            self.sparse_local,
            self.sparse_random,
            self.mask_block_padding,
            self.mirror_local_values,
        )


@dataclass
class TextOutput:
    """Result of :meth:`SViTT.encode_text`: text-only states, their [CLS], and the 1/0 mask."""

    hidden: Tensor
    cls: Tensor
    attention_mask: Tensor


@register_family("svitt", SViTTConfig)
class SViTT(nn.Module):
    """SViTT pretraining model: sparse video encoder, BERT text/fusion encoder, ITC/ITM/MLM heads.

    Args:
        config: the :class:`SViTTConfig`.
    """

    def __init__(self, config: SViTTConfig) -> None:
        super().__init__()
        cfg = self.config = config
        eps = cfg.layer_norm_eps
        self.vision = SparseVideoBEiT(cfg.vision_encoder_config())
        self.vision_norm = nn.LayerNorm(cfg.vision_width, eps=eps)
        self.text_embeddings = BertEmbeddings(
            cfg.vocab_size,
            cfg.text_width,
            cfg.max_text_positions,
            cfg.type_vocab_size,
            eps,
            cfg.text_dropout,
        )
        self.text = BertEncoder(
            cfg.text_width,
            cfg.text_heads,
            cfg.text_mlp,
            eps,
            cfg.text_dropout,
            cfg.text_layers,
            cfg.fusion_layer,
            cfg.vision_width,
            cfg.xmodal_drop_layers,
            cfg.xmodal_keep_rate,
        )
        self.mlm_head = MLMHead(cfg.text_width, cfg.vocab_size, eps) if cfg.mlm_head else None
        self.vision_proj = nn.Linear(cfg.vision_width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text_width, cfg.embed_dim)
        self.temp = nn.Parameter(torch.tensor(cfg.temp_init))
        self.itm_head = nn.Linear(cfg.text_width, 2)
        self.apply(_init_weights)

    def encode_video(
        self,
        video: Tensor,
        random_blocks: list[Tensor] | None = None,
        generator: torch.Generator | None = None,
        output_hidden_states: bool = False,
    ) -> VideoOutput:
        """Encode float clips ``(B, T, 3, H, W)`` (normalised to [-1, 1]).

        Args:
            video: the clips; T may be smaller than ``config.num_frames``.
            random_blocks: one recorded ``(nb, random)`` table per layer to inject; drawn with
                ``generator`` (global RNG when None, as officially) otherwise.
            generator: random source for the block tables (seed it for deterministic eval).
            output_hidden_states: also return the embeddings and every layer's output.
        """
        hidden, out = self.vision(video, random_blocks, generator, output_hidden_states)
        out.tokens = self.vision_norm(hidden)
        return out

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextOutput:
        """Text-only BERT layers over ``[CLS] tokens`` ids ``(B, L)`` with a 1/0 mask."""
        x = self.text_embeddings(input_ids)
        x = self.text.encode_text(x, padding_bias(attention_mask, x.dtype))
        return TextOutput(x, x[:, 0], attention_mask)

    def fuse(self, text: TextOutput, video_tokens: Tensor, prune: bool = True) -> FusionResult:
        """Fusion layers: text states cross-attend to ``video_tokens`` (``VideoOutput.tokens``)."""
        bias = padding_bias(text.attention_mask, text.hidden.dtype)
        return self.text.fuse(text.hidden, bias, video_tokens, prune=prune)

    def itm_logits(self, text: TextOutput, video_tokens: Tensor) -> Tensor:
        """ITM logits ``(B, 2)`` (no-match, match) for aligned text/video pairs."""
        return self.itm_head(self.fuse(text, video_tokens).hidden[:, 0])

    def itc_features(self, video_pooled: Tensor, text_cls: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ITC embeddings ``(video, text)``, each ``(B, embed_dim)``."""
        v = F.normalize(self.vision_proj(video_pooled), dim=-1)
        return v, F.normalize(self.text_proj(text_cls), dim=-1)

    def itc_similarity(self, video_feat: Tensor, text_feat: Tensor) -> Tensor:
        """``sim_i2t = v tᵀ / temp`` (videos x texts); clamps ``temp`` to [0.001, 0.5] in place."""
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        return video_feat @ text_feat.t() / self.temp

    def mlm_logits(self, input_ids: Tensor, attention_mask: Tensor, video_tokens: Tensor) -> Tensor:
        """Masked-LM logits ``(B, L, vocab)`` for masked ids fused with the video tokens."""
        if self.mlm_head is None:
            raise ValueError("this SViTT has no MLM head (SViTTConfig.mlm_head=False)")
        fused = self.fuse(self.encode_text(input_ids, attention_mask), video_tokens).hidden
        return self.mlm_head(fused, self.text_embeddings.word.weight)

    def itm_loss(
        self,
        sim_i2t: Tensor,
        text: TextOutput,
        video_tokens: Tensor,
        idx: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """ITM with in-batch hard negatives drawn from the ITC similarity.

        One negative video per text (``multinomial`` over ``softmax(sim_t2i + 1e-4)`` with
        positives zeroed), then one negative text per video; the fusion encoder scores the 3N
        pairs (pos, text+neg video, neg text+video) with labels 1, 0, 0.

        Returns:
            ``(loss, negative video index per text, negative text index per video)``.
        """
        with torch.no_grad():
            positive = idx[:, None] == idx[None, :]
            w_i2t = F.softmax(sim_i2t.float() + 1e-4, dim=1).masked_fill(positive, 0)
            w_t2i = F.softmax(sim_i2t.t().float() + 1e-4, dim=1).masked_fill(positive, 0)
            neg_video = torch.multinomial(w_t2i, 1, generator=generator).squeeze(1)
            neg_text = torch.multinomial(w_i2t, 1, generator=generator).squeeze(1)
        hidden = torch.cat([text.hidden, text.hidden, text.hidden[neg_text]])
        mask = text.attention_mask
        pairs_text = TextOutput(hidden, hidden[:, 0], torch.cat([mask, mask, mask[neg_text]]))
        pairs_video = torch.cat([video_tokens, video_tokens[neg_video], video_tokens])
        logits = self.itm_logits(pairs_text, pairs_video)
        n = video_tokens.shape[0]
        labels = torch.cat([torch.ones(n), torch.zeros(2 * n)]).long().to(logits.device)
        return F.cross_entropy(logits, labels), neg_video, neg_text

    def forward(
        self,
        video: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        idx: Tensor,
        mlm_input_ids: Tensor | None = None,
        mlm_labels: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Pretraining losses ``{"itc", "itm", "mlm", "loss"}`` (weights 1/1/1, as officially).

        Args:
            video: ``(B, T, 3, H, W)`` clips.
            input_ids, attention_mask: ``(B, L)`` captions.
            idx: ``(B,)`` match ids (same video => positive for ITC, never an ITM negative).
            mlm_input_ids, mlm_labels: masked ids and labels (see :func:`mlm_mask`); MLM is
                skipped when None.
            generator: random source of block tables and ITM negatives.
        """
        out = self.encode_video(video, generator=generator)
        text = self.encode_text(input_ids, attention_mask)
        sim = self.itc_similarity(*self.itc_features(out.pooled, text.cls))
        losses = {"itc": itc_loss(sim, idx)}
        losses["itm"] = self.itm_loss(sim, text, out.tokens, idx, generator)[0]
        if mlm_input_ids is not None and mlm_labels is not None:
            logits = self.mlm_logits(mlm_input_ids, attention_mask, out.tokens)
            losses["mlm"] = F.cross_entropy(logits.flatten(0, 1), mlm_labels.flatten())
        losses["loss"] = sum(losses.values())
        return losses


def mlm_mask(
    input_ids: Tensor,
    vocab_size: int,
    probability: float = 0.5,
    mask_id: int = 103,
    special_ids: tuple[int, ...] = (0, 101),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """SViTT's MLM corruption: returns ``(masked ids, labels)`` (labels -100 where unmasked).

    Each position is chosen with ``probability`` (0.5 in SViTT, not BERT's 0.15), never a special
    id ([PAD], [CLS]); chosen ones become ``mask_id`` with p 0.8, else a random id in
    ``[0, vocab_size)`` with p 0.5 (i.e. 10 % / 10 %), else stay.
    """

    def coin(p: float) -> Tensor:
        full = torch.full(input_ids.shape, p, device=input_ids.device)
        return torch.bernoulli(full, generator=generator).bool()

    chosen = coin(probability)
    for special in special_ids:
        chosen &= input_ids != special
    labels = input_ids.masked_fill(~chosen, -100)
    replaced = coin(0.8) & chosen
    randomised = coin(0.5) & chosen & ~replaced
    words = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    masked = input_ids.masked_fill(replaced, mask_id)
    return torch.where(randomised, words, masked), labels


def itc_loss(sim_i2t: Tensor, idx: Tensor) -> Tensor:
    """Symmetric InfoNCE over the local batch; samples sharing ``idx`` are all positives."""
    positive = (idx[:, None] == idx[None, :]).float()
    targets = positive / positive.sum(1, keepdim=True)
    i2t = -(F.log_softmax(sim_i2t, dim=1) * targets).sum(1).mean()
    t2i = -(F.log_softmax(sim_i2t.t(), dim=1) * targets).sum(1).mean()
    return (i2t + t2i) / 2


def causal_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive ``(B, 1, L, L)`` decoder bias: causal and padding, ``(1 - m) * -10000``."""
    length = mask.shape[1]
    causal = torch.ones(length, length, device=mask.device).tril()
    allowed = causal[None, None] * mask[:, None, None, :].to(causal.dtype)
    return ((1.0 - allowed) * -10000.0).to(dtype)


@register_family("svitt_vqa", SViTTConfig)
class SViTTVQA(nn.Module):
    """SViTT VQA model (ALBEF-style): question encoder fused with the video, answer decoder.

    The question runs through all BERT layers cross-attending to the video tokens (no text-guided
    pruning: the official ``multi_modal`` mode); a ``decoder_layers``-layer causal BERT decoder
    cross-attends to the question states and scores answers, which are ranked from a fixed list.

    Args:
        config: the :class:`SViTTConfig` (``decoder_layers`` sets the decoder depth).
    """

    def __init__(self, config: SViTTConfig) -> None:
        super().__init__()
        cfg = self.config = config
        eps, w = cfg.layer_norm_eps, cfg.text_width
        self.vision = SparseVideoBEiT(cfg.vision_encoder_config(pool=False))
        self.vision_norm = nn.LayerNorm(cfg.vision_width, eps=eps)
        args = (
            cfg.vocab_size,
            w,
            cfg.max_text_positions,
            cfg.type_vocab_size,
            eps,
            cfg.text_dropout,
        )
        self.text_embeddings = BertEmbeddings(*args)
        self.text = BertEncoder(
            w, cfg.text_heads, cfg.text_mlp, eps, cfg.text_dropout, cfg.text_layers,
            cfg.fusion_layer, cfg.vision_width,
        )  # fmt: skip
        self.answer_embeddings = BertEmbeddings(*args)
        self.decoder = BertEncoder(
            w, cfg.text_heads, cfg.text_mlp, eps, cfg.text_dropout, cfg.decoder_layers, 0, w
        )
        self.answer_head = MLMHead(w, cfg.vocab_size, eps)
        self.apply(_init_weights)

    def encode_question(
        self,
        video: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Question states ``(B, Lq, D)``: text layers, then fusion with the video tokens."""
        tokens = self.vision_norm(self.vision(video, generator=generator)[0])
        x = self.text_embeddings(input_ids)
        bias = padding_bias(attention_mask, x.dtype)
        x = self.text.encode_text(x, bias)
        return self.text.fuse(x, bias, tokens, prune=False).hidden

    def answer_logits(
        self, answer_ids: Tensor, answer_mask: Tensor, states: Tensor, states_mask: Tensor
    ) -> Tensor:
        """Next-token logits ``(N, La, vocab)`` of answers (``[CLS] a... [SEP]``) given states."""
        x = self.answer_embeddings(answer_ids)
        x = self.decoder.fuse(x, causal_bias(answer_mask, x.dtype), states, states_mask, False)
        return self.answer_head(x.hidden, self.answer_embeddings.word.weight)

    def answer_nll(
        self, answer_ids: Tensor, answer_mask: Tensor, states: Tensor, states_mask: Tensor
    ) -> Tensor:
        """Per-answer summed next-token cross entropy ``(N,)`` (pads excluded)."""
        logits = self.answer_logits(answer_ids, answer_mask, states, states_mask)[:, :-1]
        targets = answer_ids.masked_fill(answer_mask == 0, -100)[:, 1:]
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return nll.view(answer_ids.shape[0], -1).sum(1)

    def loss(
        self,
        states: Tensor,
        states_mask: Tensor,
        answer_ids: Tensor,
        answer_mask: Tensor,
        weights: Tensor,
        counts: Tensor,
    ) -> Tensor:
        """VQA training loss ``sum(w * nll) / B`` over the answers of every question.

        Args:
            states, states_mask: question states ``(B, Lq, D)`` and their mask.
            answer_ids, answer_mask: ``(N, La)`` answers of all questions, question-major.
            weights: ``(N,)`` answer weights (r/m for an answer given r times by m annotators).
            counts: ``(B,)`` answers per question (sums to N).
        """
        states = states.repeat_interleave(counts, dim=0)
        states_mask = states_mask.repeat_interleave(counts, dim=0)
        nll = self.answer_nll(answer_ids, answer_mask, states, states_mask)
        return (weights * nll).sum() / counts.shape[0]

    @torch.no_grad()
    def rank_answers(
        self,
        states: Tensor,
        states_mask: Tensor,
        answer_ids: Tensor,
        answer_mask: Tensor,
        k: int = 128,
    ) -> tuple[Tensor, Tensor]:
        """Rank a fixed answer list (official inference, one clip per question).

        The ``k`` answers with the most likely first token (one decoder step from ``[CLS]``) are
        re-scored by ``log p(first token) - nll(whole answer)`` (the first token is counted
        twice, as officially) and softmaxed.

        Returns:
            ``(answer indices, probabilities)``, both ``(B, k)``, best first.
        """
        b, k = states.shape[0], min(k, answer_ids.shape[0])
        start = answer_ids[:1, :1].expand(b, 1)
        first = self.answer_logits(start, torch.ones_like(start), states, states_mask)[:, 0]
        first_probs = first.softmax(-1)[:, answer_ids[:, 1]]
        top_probs, top_ids = first_probs.topk(k, dim=1)
        flat = top_ids.flatten()
        nll = self.answer_nll(
            answer_ids[flat],
            answer_mask[flat],
            states.repeat_interleave(k, 0),
            states_mask.repeat_interleave(k, 0),
        )
        scores = (top_probs.log() - nll.view(b, k)).softmax(-1)
        probs, order = scores.topk(k, dim=1)
        return top_ids.gather(1, order), probs


@dataclass
class RetrievalScores:
    """Score matrices of :func:`retrieval_scores` (videos x texts unless named otherwise).

    Attributes:
        itc: mean over clips of the cosine similarity (no temperature, as officially).
        itm_v2t: ITM match logits of each video's top-``k_test`` texts, -100 elsewhere.
        itm_t2v: ``(texts, videos)`` ITM match logits of each text's top-``k_test`` videos.
    """

    itc: Tensor
    itm_v2t: Tensor
    itm_t2v: Tensor


def split_clips(video: Tensor, num_clips: int, interleaved: bool = False) -> Tensor:
    """``(B, K*n, ...)`` -> ``(K, B, n, ...)``: K consecutive segments, or every K-th frame."""
    b, t = video.shape[:2]
    if t % num_clips:
        raise ValueError(f"{t} test frames do not split into {num_clips} clips")
    rest = video.shape[2:]
    if interleaved:  # 'b (n k)'
        return video.reshape(b, t // num_clips, num_clips, *rest).transpose(1, 2).transpose(0, 1)
    return video.reshape(b, num_clips, t // num_clips, *rest).transpose(0, 1)  # 'b (k n)'


_ENSEMBLES = {
    "mean": lambda x: x.mean(0),
    "max": lambda x: x.amax(0),
    "lse": lambda x: x.logsumexp(0),
}


@torch.no_grad()
def retrieval_scores(
    model: SViTT,
    video: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    k_test: int = 128,
    ensemble: str = "lse",
    interleaved: bool = False,
    generator: torch.Generator | None = None,
) -> RetrievalScores:
    """Official SViTT retrieval scoring: ITC over all pairs, ITM re-rank of the top ``k_test``.

    Args:
        model: the model (eval mode is the caller's choice).
        video: ``(Nv, T_test, 3, H, W)``; with ``ensemble != "concat"`` it is split into
            ``T_test / num_frames`` clips encoded separately.
        input_ids, attention_mask: ``(Nt, L)`` captions.
        k_test: candidates re-ranked by ITM per query.
        ensemble: ``"concat"`` (all frames at once), ``"mean"``, ``"max"`` or ``"lse"``
            (logsumexp, the official default) over the per-clip ITM logits.
        interleaved: clips take every K-th frame instead of consecutive segments.
        generator: random source of the block tables (one draw per clip).
    """
    if ensemble != "concat" and ensemble not in _ENSEMBLES:
        raise ValueError(f"ensemble={ensemble!r}: expected 'concat', 'mean', 'max' or 'lse'")
    num_clips = 1 if ensemble == "concat" else video.shape[1] // model.config.num_frames
    clips = split_clips(video, max(num_clips, 1), interleaved)
    text = model.encode_text(input_ids, attention_mask)
    outs = [model.encode_video(clip, generator=generator) for clip in clips]
    feats = [model.itc_features(o.pooled, text.cls) for o in outs]
    itc = torch.stack([v @ t.t() for v, t in feats]).mean(0)  # (Nv, Nt) cosine, no temperature
    combine = _ENSEMBLES.get(ensemble, _ENSEMBLES["mean"])

    def itm(video_idx: Tensor, text_idx: Tensor) -> Tensor:
        pairs = TextOutput(text.hidden[text_idx], text.cls[text_idx], attention_mask[text_idx])
        return combine(
            torch.stack([model.itm_logits(pairs, o.tokens[video_idx])[:, 1] for o in outs])
        )

    nv, nt = itc.shape
    v2t = torch.full((nv, nt), -100.0, device=itc.device)
    t2v = torch.full((nt, nv), -100.0, device=itc.device)
    for i in range(nv):
        top = itc[i].topk(min(k_test, nt)).indices
        v2t[i, top] = itm(torch.full_like(top, i), top)
    for j in range(nt):
        top = itc[:, j].topk(min(k_test, nv)).indices
        t2v[j, top] = itm(top, torch.full_like(top, j))
    return RetrievalScores(itc, v2t, t2v)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    elif isinstance(module, SparseVideoBEiT):
        nn.init.trunc_normal_(module.cls_token, std=0.02)


@register_model
def svitt_base(**overrides) -> SViTT:
    """SViTT-B pretraining model: BEiT-B + BERT-base, 4 frames, block 56, keep 0.7 at [3,6,9]."""
    return SViTT(SViTTConfig(**overrides))


_TINY = dict(
    image_size=112, vision_width=96, vision_layers=4, vision_heads=3, vision_mlp=384,
    attn_block_size=14, token_drop_layers=(1, 2), vocab_size=30522, text_width=96,
    text_layers=5, text_heads=3, text_mlp=384, fusion_layer=2, max_text_positions=64,
    embed_dim=64, xmodal_drop_layers=(3,),
)  # fmt: skip


@register_model
def svitt_tiny(**overrides) -> SViTT:
    """Tiny SViTT for tests and demos: width 96, 4+5 layers, 112^2, 4 frames, block 14."""
    return SViTT(SViTTConfig(**{**_TINY, **overrides}))


@register_model
def svitt_base_vqa(**overrides) -> SViTTVQA:
    """SViTT-B VQA model: the svitt_base encoders and a 3-layer answer decoder."""
    return SViTTVQA(SViTTConfig(**overrides))


@register_model
def svitt_tiny_vqa(**overrides) -> SViTTVQA:
    """Tiny SViTT VQA model (the svitt_tiny encoders and a 3-layer answer decoder)."""
    return SViTTVQA(SViTTConfig(**{**_TINY, **overrides}))
