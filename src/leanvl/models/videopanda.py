"""Video-Panda: an encoder-free video-language model (STAB + a Llama-family LLM).

Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free Video-Language Models",
CVPR 2025 (arXiv 2412.18609); official code ``github.com/jh-yi/Video-Panda``. This file
re-implements what the official code computes (spec: ``shared/specs/videopanda.md``):

* :class:`SpatioTemporalAlignmentBlock` (STAB): patch embedding, LSTE and GSTRA per chunk of
  ``chunk_length`` frames, the dense connection, then per frame the crop to the valid
  (unpadded) patch rectangle, LSD window pooling, FSRA frame summary, the fusion of frame and
  chunk context into one context token, and ``<row>`` split tokens. Parts in
  :mod:`leanvl.layers.stab`.
* the ``mlp2x_gelu`` projector to the LLM width;
* the LLM glue: any causal LM loadable by ``transformers.AutoModelForCausalLM`` (built from an
  inline Llama architecture, or from a local path / hub id), splicing of the frame tokens in
  place of the ``image_token_index`` placeholders, label masking of visual positions, and
  greedy / sampled generation with the KV cache.

``transformers`` is imported only when an LLM is built, so importing this module is cheap and
never touches LLM weights.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from leanvl.config import ConfigError, load_config
from leanvl.layers.stab import (
    ChunkContextAttention,
    LocalSpatioTemporalEncoding,
    QueryAttentionPool,
    WindowAttentionPool,
)
from leanvl.registry import register_family, register_model

__all__ = [
    "IMAGE_TOKEN",
    "SYSTEM_PROMPTS",
    "build_prompt",
    "conversation_labels",
    "tokenize_prompt",
    "LlamaArchitecture",
    "SplicedInputs",
    "STABOutput",
    "SpatioTemporalAlignmentBlock",
    "VideoPanda",
    "VideoPandaConfig",
    "VideoPandaGeneration",
    "VideoPandaOutput",
    "videopanda_7b",
    "videopanda_tiny",
]


@dataclass
class LlamaArchitecture:
    """Inline architecture of a Llama LLM, built with random weights (tiny models, converters).

    Field names are those of ``transformers.LlamaConfig``; defaults are Vicuna-7B v1.5.
    """

    vocab_size: int = 32000
    """Vocabulary size (rows of the embedding and of the LM head)."""
    hidden_size: int = 4096
    """Model width; the projector maps the STAB width to it."""
    intermediate_size: int = 11008
    """Hidden size of the SwiGLU MLP."""
    num_hidden_layers: int = 32
    """Number of decoder layers."""
    num_attention_heads: int = 32
    """Query heads."""
    num_key_value_heads: int = 32
    """Key/value heads (equal to the query heads for Llama-2/Vicuna: no GQA)."""
    max_position_embeddings: int = 4096
    """Context length the model was trained for."""
    rms_norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    rope_theta: float = 10000.0
    """RoPE base."""
    hidden_act: str = "silu"
    """MLP activation."""
    tie_word_embeddings: bool = False
    """Share the embedding matrix with the LM head."""
    bos_token_id: int = 1
    """Beginning-of-sequence token id."""
    eos_token_id: int = 2
    """End-of-sequence token id (generation stops on it)."""
    pad_token_id: int = 0
    """Padding token id (Video-Panda pads with ``unk`` = 0)."""


@dataclass
class VideoPandaConfig:
    """Configuration of :class:`VideoPanda`. Defaults are the released Video-Panda-7B STAB.

    The LLM comes from exactly one of ``llm`` (an inline Llama architecture, random init, whose
    weights then come from a checkpoint state dict) or ``llm_path`` (a local folder or hub id
    loaded with ``AutoModelForCausalLM.from_pretrained`` on first use).
    """

    width: int = 1024
    """STAB channel width C (official ``video_hidden_size``)."""
    image_size: int = 448
    """Side S of the square (padded) input frames in pixels."""
    patch_size: int = 14
    """Patch embedding kernel = stride (official ``patch_stride``)."""
    lsd_stride: int = 2
    """LSD window side s: each frame's patch grid is downsampled s x s (``conv_stride``)."""
    chunk_length: int = 4
    """Frames per temporal chunk: LSTE and GSTRA never look across chunks (``CHUNK_SIZE``)."""
    num_frames: int = 8
    """Frames per video (``NUM_FRAMES``); one placeholder token per frame in the prompt."""
    gstra_heads: int = 8
    """Heads of the GSTRA cross-attention (official: a width table, 1024 -> 8)."""
    lsd_heads: int = 8
    """Heads of the LSD window attention."""
    fsra_heads: int = 8
    """Heads of the FSRA frame-summary attention."""
    lmhra_channels: int = 682
    """Bottleneck channels of the LSTE local MHRA (official ``int(width // 1.5)``)."""
    gstra_mlp_ratio: float = 4.0
    """GSTRA MLP hidden size as a multiple of ``width``."""
    gstra_dropout: float = 0.5
    """Dropout inside the GSTRA MLP (training only)."""
    fusion_dropout: float = 0.5
    """Dropout between LayerNorm and Linear of the context-token fusion (training only)."""
    padded_frame_patches: int = 16
    """Zero-padded frames (all-zero mask) are cropped to the top-left square of this many
    patches (hard-coded 16 in the official code, whatever the grid size)."""
    projector: str = "mlp2x_gelu"
    """Projector to the LLM width: ``linear`` or ``mlp<N>x_gelu`` (Linear, then N-1 x
    (GELU, Linear))."""
    llm: LlamaArchitecture | None = None
    """Inline Llama architecture (random init; weights from the state dict)."""
    llm_path: str | None = None
    """Local folder or hub id of a causal LM, loaded lazily by ``AutoModelForCausalLM``."""
    llm_hidden_size: int = 0
    """LLM width; required with ``llm_path`` (so the projector is built without loading the
    LLM), taken from ``llm`` otherwise (0 = take it from there)."""
    attn_implementation: str = "sdpa"
    """Attention backend of the transformers LLM: ``sdpa`` or ``eager``."""
    image_token_index: int = -200
    """Placeholder id in ``input_ids``; the k-th one of a sample is replaced by frame k."""
    ignore_index: int = -100
    """Label value excluded from the loss (visual positions, prompt, padding)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form provenance (e.g. the converter's source config); not used by the model."""


def _validate(config: VideoPandaConfig) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"VideoPandaConfig.{name}={getattr(config, name)!r}: {why}")

    for name in ("width", "image_size", "patch_size", "lsd_stride", "num_frames", "lmhra_channels"):
        if getattr(config, name) <= 0:
            raise bad(name, "must be positive")
    if config.image_size % config.patch_size:
        raise bad("image_size", f"must be a multiple of patch_size={config.patch_size}")
    if config.chunk_length < 2:
        raise bad("chunk_length", "must be at least 2 (the STAB is a video block)")
    if config.num_frames % config.chunk_length:
        raise bad("num_frames", f"must be a multiple of chunk_length={config.chunk_length}")
    if not re.fullmatch(r"linear|mlp[1-9]\d*x_gelu", config.projector):
        raise bad("projector", "expected 'linear' or 'mlp<N>x_gelu'")
    if config.attn_implementation not in ("sdpa", "eager"):
        raise bad("attn_implementation", "expected 'sdpa' or 'eager'")
    if (config.llm is None) == (config.llm_path is None):
        raise ConfigError(
            "VideoPandaConfig: set exactly one of 'llm' (inline architecture) and 'llm_path' "
            f"(got llm={config.llm!r}, llm_path={config.llm_path!r})"
        )
    if config.llm_path is not None and config.llm_hidden_size <= 0:
        raise bad("llm_hidden_size", "must be set (> 0) when the LLM comes from 'llm_path'")
    if config.llm is not None and config.llm_hidden_size not in (0, config.llm.hidden_size):
        raise bad("llm_hidden_size", f"disagrees with llm.hidden_size={config.llm.hidden_size}")


def llm_width(config: VideoPandaConfig) -> int:
    """Hidden size of the LLM of ``config`` (the projector's output width)."""
    return config.llm.hidden_size if config.llm is not None else config.llm_hidden_size


def build_projector(kind: str, in_features: int, out_features: int) -> nn.Sequential:
    """The official ``build_video_projector``: ``linear`` or ``mlp<N>x_gelu`` (exact GELU)."""
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_features, out_features))
    depth = int(kind[3:-6])
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)


class STABOutput(NamedTuple):
    """Output of :class:`SpatioTemporalAlignmentBlock` for a batch of videos."""

    tokens: list[torch.Tensor]
    """Per frame (video-major), a ``(1 + h*(w+1), C)`` tensor: context token, then h rows of
    w spatial tokens followed by the ``<row>`` split token."""
    grids: torch.Tensor
    """``(B*T, 2)`` int64: the LSD grid (h, w) of each frame."""
    lste: torch.Tensor
    """``(B*T/chunk_length, C, chunk_length, G, G)``: LSTE output per chunk (video-major)."""


class SpatioTemporalAlignmentBlock(nn.Module):
    """The STAB: (B, T, 4, S, S) frames ``[R, G, B, mask]`` -> variable-length frame tokens.

    Args:
        config: the model config (STAB fields only are read).
    """

    def __init__(self, config: VideoPandaConfig) -> None:
        super().__init__()
        c = config.width
        self.config = config
        self.patch_embed = nn.Conv2d(3, c, config.patch_size, config.patch_size, bias=False)
        self.lste = LocalSpatioTemporalEncoding(c, config.lmhra_channels)
        self.gstra = ChunkContextAttention(
            c, config.gstra_heads, config.gstra_mlp_ratio, config.gstra_dropout
        )
        self.lsd = WindowAttentionPool(c, config.lsd_stride, config.lsd_heads)
        self.fsra = QueryAttentionPool(c, config.fsra_heads)
        self.balance = nn.Parameter(torch.zeros(c))
        self.fusion = nn.Sequential(
            nn.LayerNorm(c), nn.Dropout(config.fusion_dropout), nn.Linear(c, c)
        )
        self.split_token = nn.Parameter(torch.zeros(c))

    def _check_frames(self, frames: torch.Tensor) -> None:
        cfg = self.config
        if frames.dim() != 5 or frames.shape[2] != 4:
            raise ValueError(
                f"frames: expected (B, T, 4, S, S) with channels [R, G, B, mask], "
                f"got shape {tuple(frames.shape)}"
            )
        t, h, w = frames.shape[1], frames.shape[3], frames.shape[4]
        if h != w or h % cfg.patch_size:
            raise ValueError(
                f"frames: side {h}x{w} must be square and a multiple of "
                f"patch_size={cfg.patch_size} (the model expects image_size={cfg.image_size})"
            )
        if t % cfg.chunk_length:
            raise ValueError(
                f"frames: {t} frames per video is not a multiple of chunk_length={cfg.chunk_length}"
            )

    def _crop_boxes(self, patch_mask: torch.Tensor) -> list[tuple[int, int, int, int]]:
        """Per frame the (h1, h2, w1, w2) patch box (end exclusive) of the valid region."""
        n, grid, _ = patch_mask.shape
        flat = (patch_mask != 0).flatten(1)
        first = flat.int().argmax(1)
        last = grid * grid - 1 - flat.flip(1).int().argmax(1)
        valid = flat.any(1)
        side = self.config.padded_frame_patches
        boxes = []
        for ok, a, b in zip(valid.tolist(), first.tolist(), last.tolist(), strict=True):
            if ok:
                boxes.append((a // grid, b // grid + 1, a % grid, b % grid + 1))
            else:  # zero-padded frame: hard-coded top-left square, as in the official code
                boxes.append((0, min(side, grid), 0, min(side, grid)))
        return boxes

    def forward(self, frames: torch.Tensor) -> STABOutput:
        """Tokenize a batch of videos.

        Args:
            frames: ``(B, T, 4, S, S)`` float; channels are normalized R, G, B and the 0/1
                validity mask; T a multiple of ``chunk_length``.
        """
        self._check_frames(frames)
        b, t, _, s, _ = frames.shape
        chunk = self.config.chunk_length
        frames = frames.reshape(b * t, 4, s, s).to(self.patch_embed.weight.dtype)
        patches = self.patch_embed(frames[:, :3])  # (BT, C, G, G)
        n, c, grid, _ = patches.shape
        patch_mask = F.avg_pool2d(frames[:, 3:], self.config.patch_size)[:, 0]

        lste = self.lste(patches.view(n // chunk, chunk, c, grid, grid).transpose(1, 2))
        context = self.gstra(lste.flatten(2).transpose(1, 2))  # (n_chunks, C)
        dense = lste.transpose(1, 2).reshape(n, c, grid, grid) + patches

        boxes = self._crop_boxes(patch_mask)
        alpha = torch.sigmoid(self.balance)
        tokens: list[torch.Tensor | None] = [None] * n
        grids = torch.zeros(n, 2, dtype=torch.long)
        # Frames sharing a crop box are pooled together (one batched LSD/FSRA call per box).
        for box in dict.fromkeys(boxes):
            idx = [i for i, other in enumerate(boxes) if other == box]
            h1, h2, w1, w2 = box
            spatial = self.lsd(dense[idx, :, h1:h2, w1:w2])  # (k, h*w, C)
            h, w = (h2 - h1) // self.lsd.stride, (w2 - w1) // self.lsd.stride
            summary = self.fsra(spatial)
            chunk_ctx = context[torch.tensor(idx, device=context.device) // chunk]
            ctx = self.fusion((1 - alpha) * chunk_ctx + alpha * summary)
            rows = torch.cat(
                [spatial.view(-1, h, w, c), self.split_token.expand(len(idx), h, 1, c)], dim=2
            )
            seq = torch.cat([ctx[:, None], rows.reshape(len(idx), h * (w + 1), c)], dim=1)
            for j, i in enumerate(idx):
                tokens[i] = seq[j]
                grids[i] = torch.tensor([h, w])
        return STABOutput(tokens, grids, lste)  # type: ignore[arg-type]


class SplicedInputs(NamedTuple):
    """LLM inputs after replacing placeholders by frame tokens."""

    inputs_embeds: torch.Tensor
    """``(B, L, D)``; padding positions are zeros."""
    attention_mask: torch.Tensor
    """``(B, L)`` bool, True on real positions."""
    labels: torch.Tensor | None
    """``(B, L)`` int64 with ``ignore_index`` on visual and padding positions (or None)."""
    position_ids: torch.Tensor
    """``(B, L)`` int64 positions (0.. per sample; padding gets clamped values)."""


class VideoPandaOutput(NamedTuple):
    """Output of :meth:`VideoPanda.forward`."""

    logits: torch.Tensor
    """``(B, L, vocab)`` next-token logits over the spliced sequence."""
    loss: torch.Tensor | None
    """Mean next-token cross-entropy over labels != ``ignore_index`` (None without labels)."""
    spliced: SplicedInputs
    """The spliced LLM inputs (embeddings, mask, labels, positions)."""


class VideoPandaGeneration(NamedTuple):
    """Output of :meth:`VideoPanda.generate`."""

    sequences: torch.Tensor
    """``(B, n)`` new token ids (``pad_token_id`` after a sample's EOS)."""
    scores: torch.Tensor
    """``(B, n, vocab)`` raw next-token logits of every step (step 0 = prefill)."""


@register_family("videopanda", VideoPandaConfig)
class VideoPanda(nn.Module):
    """Video-Panda: STAB + projector + a transformers causal LM.

    Args:
        config: the model configuration; see :class:`VideoPandaConfig`.
    """

    def __init__(self, config: VideoPandaConfig) -> None:
        super().__init__()
        _validate(config)
        self.config = config
        self.stab = SpatioTemporalAlignmentBlock(config)
        self.projector = build_projector(config.projector, config.width, llm_width(config))
        self.register_module("llm", _build_inline_llm(config) if config.llm else None)

    @property
    def language_model(self) -> nn.Module:
        """The LLM; with ``llm_path`` it is loaded here on first use (same device/dtype as the
        projector)."""
        if self.llm is None:
            self.llm = _load_pretrained_llm(self.config, self.projector[0].weight)
        return self.llm

    def encode_videos(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Projected tokens of every frame (video-major) and the LSD grids ``(B*T, 2)``.

        Args:
            frames: ``(B, T, 4, S, S)`` preprocessed frames (see the STAB).
        """
        out = self.stab(frames)
        sizes = [len(x) for x in out.tokens]
        projected = self.projector(torch.cat(out.tokens)).split(sizes)
        return list(projected), out.grids

    def splice(
        self,
        input_ids: torch.Tensor,
        frame_tokens: list[torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> SplicedInputs:
        """Replace the k-th placeholder of sample b by frame k of video b, then re-pad.

        Args:
            input_ids: ``(B, N)`` ids with ``image_token_index`` placeholders.
            frame_tokens: B*T projected ``(n_i, D)`` tensors, video-major.
            attention_mask: ``(B, N)``; positions where it is False are dropped first.
            labels: ``(B, N)`` labels; visual positions become ``ignore_index``.
            padding_side: ``right`` (official training/forward) or ``left`` (batched
                generation).
        """
        cfg = self.config
        batch = input_ids.shape[0]
        if len(frame_tokens) % max(batch, 1):
            raise ValueError(f"{len(frame_tokens)} frames cannot be split over {batch} samples")
        per_video = len(frame_tokens) // batch
        embed = self.language_model.get_input_embeddings()
        keep = attention_mask.bool() if attention_mask is not None else None
        embeds, label_rows = [], []
        for i in range(batch):
            ids = input_ids[i] if keep is None else input_ids[i][keep[i]]
            lab = None if labels is None else labels[i] if keep is None else labels[i][keep[i]]
            slots = (ids == cfg.image_token_index).nonzero()[:, 0].tolist()
            if len(slots) != per_video:
                raise ValueError(
                    f"input_ids[{i}] has {len(slots)} placeholders ({cfg.image_token_index}) "
                    f"but its video has {per_video} frames"
                )
            text = embed(ids.masked_fill(ids == cfg.image_token_index, 0))
            pieces, lab_pieces, start = [], [], 0
            for k, pos in enumerate([*slots, len(ids)]):
                pieces.append(text[start:pos])
                if lab is not None:
                    lab_pieces.append(lab[start:pos])
                if k < len(slots):
                    frame = frame_tokens[i * per_video + k].to(text.dtype)
                    pieces.append(frame)
                    lab_pieces.append(
                        torch.full(
                            (len(frame),), cfg.ignore_index, dtype=torch.long, device=ids.device
                        )
                    )
                start = pos + 1
            embeds.append(torch.cat(pieces))
            if lab is not None:
                label_rows.append(torch.cat(lab_pieces).long())
        return _pad(embeds, label_rows or None, cfg.ignore_index, padding_side)

    def forward(
        self,
        input_ids: torch.Tensor,
        frames: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> VideoPandaOutput:
        """Full multimodal forward (training / scoring).

        Args:
            input_ids: ``(B, N)`` prompt ids, ``num_frames`` placeholders per sample.
            frames: ``(B, T, 4, S, S)`` preprocessed frames.
            attention_mask: ``(B, N)`` text mask (False on padding).
            labels: ``(B, N)`` labels (``ignore_index`` on the prompt and padding).
        """
        frame_tokens, _ = self.encode_videos(frames)
        spliced = self.splice(input_ids, frame_tokens, attention_mask, labels)
        logits = self.language_model(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask.long(),
            position_ids=spliced.position_ids,
            use_cache=False,
        ).logits
        loss = None
        if spliced.labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].float().flatten(0, 1),
                spliced.labels[:, 1:].flatten(),
                ignore_index=self.config.ignore_index,
            )
        return VideoPandaOutput(logits, loss, spliced)

    @torch.no_grad()
    def decode_steps(
        self,
        input_ids: torch.Tensor,
        frames: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ):
        """The cached decoding loop shared by :meth:`generate` and streaming: one multimodal
        prefill, then one cached step per token.

        A generator: each ``next()`` yields ``(token (B,), logits (B, V) float)`` of the next
        position; ``send(token)`` feeds the token actually kept (e.g. padded for finished rows)
        and yields the following one. The caller decides when to stop (``close()``).
        """
        llm = self.language_model
        frame_tokens, _ = self.encode_videos(frames)
        spliced = self.splice(input_ids, frame_tokens, attention_mask, padding_side="left")
        mask = spliced.attention_mask.long()
        positions = spliced.position_ids[:, -1:]
        out = llm(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=mask,
            position_ids=spliced.position_ids,
            use_cache=True,
        )
        while True:
            logits = out.logits[:, -1].float()
            token = _next_token(logits, do_sample, temperature, top_p, generator)
            kept = yield token, logits
            token = token if kept is None else kept
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions + 1
            out = llm(
                inputs_embeds=llm.get_input_embeddings()(token[:, None]),
                attention_mask=mask,
                position_ids=positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )

    def generate(
        self,
        input_ids: torch.Tensor,
        frames: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        eos_token_id: int | list[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> VideoPandaGeneration:
        """Decode with the KV cache: one multimodal prefill, then one token per step.

        Args:
            input_ids: ``(B, N)`` prompts (right-padded if ``attention_mask`` is given).
            frames: ``(B, T, 4, S, S)`` preprocessed frames.
            attention_mask: ``(B, N)`` text mask.
            max_new_tokens: number of steps at most.
            do_sample: sample from the (temperature, top-p) distribution instead of argmax.
            temperature: softmax temperature when sampling.
            top_p: nucleus sampling mass when sampling.
            eos_token_id: stop id(s) (default: the LLM config's ``eos_token_id``; -1 never
                stops).
            generator: random generator for sampling.
        """
        llm = self.language_model
        eos = llm.config.eos_token_id if eos_token_id is None else eos_token_id
        pad = llm.config.pad_token_id if llm.config.pad_token_id is not None else 0
        stop = torch.tensor(
            eos if isinstance(eos, list | tuple) else [eos], device=input_ids.device
        )
        finished = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        sequences, scores = [], []
        steps = self.decode_steps(
            input_ids, frames, attention_mask, do_sample, temperature, top_p, generator
        )
        token, logits = next(steps)
        for step in range(max_new_tokens):
            scores.append(logits)
            token = token.masked_fill(finished, pad)
            sequences.append(token)
            finished |= torch.isin(token, stop)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            token, logits = steps.send(token)
        steps.close()
        return VideoPandaGeneration(torch.stack(sequences, 1), torch.stack(scores, 1))


def _pad(
    embeds: list[torch.Tensor],
    labels: list[torch.Tensor] | None,
    ignore_index: int,
    side: str,
) -> SplicedInputs:
    if side not in ("left", "right"):
        raise ValueError(f"padding_side={side!r}: expected 'left' or 'right'")
    length = max(len(e) for e in embeds)
    ref = embeds[0]
    out = ref.new_zeros(len(embeds), length, ref.shape[-1])
    mask = torch.zeros(len(embeds), length, dtype=torch.bool, device=ref.device)
    lab = None
    if labels is not None:
        lab = torch.full((len(embeds), length), ignore_index, dtype=torch.long, device=ref.device)
    for i, e in enumerate(embeds):
        sl = slice(0, len(e)) if side == "right" else slice(length - len(e), length)
        out[i, sl] = e
        mask[i, sl] = True
        if lab is not None and labels is not None:
            lab[i, sl] = labels[i]
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    return SplicedInputs(out, mask, lab, positions)


def _next_token(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 when sampling")
    probs = (logits / temperature).softmax(-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(-1, descending=True)
        drop = sorted_probs.cumsum(-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _build_inline_llm(config: VideoPandaConfig) -> nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig

    arch = dataclasses.asdict(config.llm)  # type: ignore[arg-type]
    llm_config = LlamaConfig(**arch)
    return AutoModelForCausalLM.from_config(
        llm_config, attn_implementation=config.attn_implementation
    )


def _load_pretrained_llm(config: VideoPandaConfig, like: torch.Tensor) -> nn.Module:
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(
        config.llm_path, attn_implementation=config.attn_implementation, dtype=like.dtype
    ).to(like.device)
    width = llm.get_input_embeddings().weight.shape[1]
    if width != config.llm_hidden_size:
        raise ConfigError(
            f"VideoPandaConfig.llm_hidden_size={config.llm_hidden_size} but the LLM at "
            f"'{config.llm_path}' has hidden size {width}"
        )
    return llm


# --- prompts (official conversation.py / mm_utils.py / train.py::preprocess_v1) -------------

IMAGE_TOKEN = "<image>"
SYSTEM_PROMPTS = {
    # training (--version v1)
    "vicuna_v1": "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    # evaluation (conv_mode videopanda_v1); the human/user mismatch is the official code's
    "videopanda_v1": "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
}
_TURN_SEP, _END = " ", "</s>"


def build_prompt(
    turns: list[tuple[str, str | None]], template: str = "videopanda_v1", num_frames: int = 8
) -> str:
    """The Vicuna-v1 conversation string with ``num_frames`` ``<image>`` placeholders.

    ``"{SYS} USER: <image>x8\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT:"``: the video
    placeholders go in front of the first question; a ``None`` answer ends the prompt with
    ``" ASSISTANT:"`` (generation).

    Args:
        turns: (question, answer or None) pairs; only the last answer may be None.
        template: ``videopanda_v1`` (evaluation) or ``vicuna_v1`` (training).
        num_frames: placeholders to insert.
    """
    if template not in SYSTEM_PROMPTS:
        raise ValueError(f"template={template!r}: expected one of {sorted(SYSTEM_PROMPTS)}")
    if not turns:
        raise ValueError("turns: at least one (question, answer) pair is required")
    text = SYSTEM_PROMPTS[template] + _TURN_SEP
    for i, (question, answer) in enumerate(turns):
        if i == 0:
            question = IMAGE_TOKEN * num_frames + "\n" + question
        text += f"USER: {question}{_TURN_SEP}"
        if answer is None:
            if i != len(turns) - 1:
                raise ValueError(f"turns[{i}]: only the last turn may have no answer")
            return text + "ASSISTANT:"
        text += f"ASSISTANT: {answer}{_END}"
    return text


def tokenize_prompt(prompt: str, tokenizer: Any, image_token_index: int = -200) -> list[int]:
    """Token ids of ``prompt`` with one ``image_token_index`` per ``<image>`` (official
    ``tokenizer_image_token``).

    Every piece between placeholders is tokenized with the tokenizer's BOS; the first piece
    keeps it, the following pieces drop their first token (their BOS).

    Args:
        prompt: text with ``<image>`` placeholders.
        tokenizer: a callable returning an object with ``input_ids`` (a Llama tokenizer) and
            with a ``bos_token_id`` attribute.
        image_token_index: the placeholder id.
    """
    pieces = [list(tokenizer(piece).input_ids) for piece in prompt.split(IMAGE_TOKEN)]
    bos = getattr(tokenizer, "bos_token_id", None)
    offset = 1 if pieces and pieces[0] and pieces[0][0] == bos else 0
    ids = pieces[0][:offset]
    for i, piece in enumerate(pieces):
        if i:
            ids.append(image_token_index)
        ids.extend(piece[offset:])
    return ids


def conversation_labels(
    prompt: str, input_ids: list[int], tokenizer: Any, ignore_index: int = -100
) -> list[int]:
    """Training labels of a ``vicuna_v1`` conversation (official ``preprocess_v1``).

    Masks BOS, and in every round (split on ``</s>``) the tokens up to and including
    ``" ASSISTANT: "`` (``len(tokens(instruction)) - 2``: BOS and the trailing-space piece that
    the Llama tokenizer merges into the answer); keeps answers and their ``</s>``; masks the
    rest. If the walked length disagrees with ``len(input_ids)``, everything is masked, as
    the official code does (with a warning there).

    Args:
        prompt: the string :func:`build_prompt` returned (all answers present).
        input_ids: ``tokenize_prompt(prompt, tokenizer)``.
        tokenizer: the tokenizer used for ``input_ids``.
        ignore_index: masked label value.
    """
    labels = list(input_ids)
    sep = f"{_TURN_SEP}ASSISTANT: "
    cur = 1
    labels[:cur] = [ignore_index] * cur
    for rnd in prompt.split(_END):
        parts = rnd.split(sep)
        if rnd == "" or len(parts) != 2:
            break
        round_len = len(tokenize_prompt(rnd, tokenizer))
        instruction_len = len(tokenize_prompt(parts[0] + sep, tokenizer)) - 2
        labels[cur : cur + instruction_len] = [ignore_index] * len(
            labels[cur : cur + instruction_len]
        )
        cur += round_len
    labels[cur:] = [ignore_index] * len(labels[cur:])
    if cur != len(input_ids):
        return [ignore_index] * len(input_ids)
    return labels


def _preset(base: dict[str, Any], overrides: dict[str, Any]) -> VideoPanda:
    return VideoPanda(load_config(VideoPandaConfig, base, overrides))


@register_model
def videopanda_7b(**overrides: Any) -> VideoPanda:
    """Video-Panda-7B: 1024-wide STAB at 448 px + mlp2x_gelu projector (45.07M) + a 7B LLM.

    The LLM is loaded lazily from ``llm_path`` (default: the hub id of Vicuna-7B v1.5, the
    LLM of the released model); pass a local folder to stay offline. A converted official
    checkpoint carries its own LLM instead (``leanvl convert videopanda``).
    """
    base = {"llm_path": "lmsys/vicuna-7b-v1.5", "llm_hidden_size": 4096}
    return _preset(base, overrides)


@register_model
def videopanda_tiny(**overrides: Any) -> VideoPanda:
    """Tiny random Video-Panda (64-wide STAB, 72 px, 2-layer 96-wide Llama) for tests/demos."""
    base = {
        "width": 64,
        "image_size": 72,
        "patch_size": 4,
        "lmhra_channels": 42,
        "llm": dataclasses.asdict(
            LlamaArchitecture(
                vocab_size=512,
                hidden_size=96,
                intermediate_size=192,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                max_position_embeddings=2048,
            )
        ),
    }
    return _preset(base, overrides)
