"""Answer questions about a video file with a Video-Panda checkpoint folder (``leanvl ask``).

Video-Panda (Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free
Video-Language Models", CVPR 2025, arXiv 2412.18609) answers by generation: the question goes
into the evaluation prompt (``videopanda_v1`` template, one ``<image>`` placeholder per frame,
spec ``videopanda.md`` §4.1), the frames through the "anypixel" preprocessing (§2.2-2.4), and
the LLM decodes greedily with its KV cache until ``</s>`` (§4.5).

Frames: a checkpoint trained by ``leanvl train`` (its ``config.json`` holds the recipe) is fed
like its training data (the recipe's ``eval_sample`` frames, decoded at the recipe's
``image_size`` and centre-cropped); any other checkpoint (e.g. converted official weights) gets
the official 1-fps sampler at native resolution. The tokenizer is the word-level one stored in
the config (``extra.tokenizer``), else an explicit path, else the LLM folder's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from leanvl.checkpoint import load, read_config
from leanvl.video import read_frames
from leanvl.video.transforms import videopanda_anypixel

__all__ = ["VideoPandaAnswerer", "anypixel_clip", "stream_generate"]


def anypixel_clip(clip: torch.Tensor, config: Any) -> torch.Tensor:
    """A model's input ``(1, T, 4, S, S)`` float32 from uint8 frames ``(T, 3, H, W)``: the
    "anypixel" preprocessing at the sizes of a ``VideoPandaConfig`` (canvas ``image_size``,
    geometry at half of it with ``patch_size``, padded to ``num_frames``)."""
    x = videopanda_anypixel(
        clip,
        image_size=config.image_size,
        teacher_size=config.image_size // 2,
        patch=config.patch_size,
        num_frames=config.num_frames,
    )
    return x.unsqueeze(0)


@torch.no_grad()
def stream_generate(
    model: Any,
    input_ids: torch.Tensor,
    frames: torch.Tensor,
    max_new_tokens: int = 64,
    eos_token_id: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield the generated token ids of one prompt as they are decoded (batch size 1).

    The same computation as :meth:`leanvl.models.videopanda.VideoPanda.generate` (one
    multimodal prefill, then one cached step per token), one token at a time; stops after
    ``eos_token_id`` (which is yielded) or ``max_new_tokens`` tokens.

    Args:
        model: a :class:`~leanvl.models.videopanda.VideoPanda`.
        input_ids: ``(1, N)`` prompt ids with the frame placeholders.
        frames: ``(1, T, 4, S, S)`` preprocessed frames.
    """
    if input_ids.shape[0] != 1:
        raise ValueError(f"stream_generate takes one prompt, got a batch of {input_ids.shape[0]}")
    llm = model.language_model
    eos = llm.config.eos_token_id if eos_token_id is None else eos_token_id
    steps = model.decode_steps(input_ids, frames, None, do_sample, temperature, top_p, generator)
    token, _ = next(steps)
    try:
        for step in range(max_new_tokens):
            yield int(token[0])
            if int(token[0]) == eos or step == max_new_tokens - 1:
                return
            token, _ = steps.send(token)
    finally:
        steps.close()


class VideoPandaAnswerer:
    """A loaded Video-Panda checkpoint folder that answers questions about video files.

    Args:
        folder: the checkpoint folder (``config.json`` + ``model.safetensors``).
        tokenizer: tokenizer folder / hub id when the config stores none (converted
            checkpoints); default: the LLM's ``llm_path``.
        device: where the model runs.
        model: the folder's model, already loaded with :func:`leanvl.load` (optional).

    Raises:
        FileNotFoundError: ``folder`` is not a checkpoint folder.
        ValueError: not a Video-Panda checkpoint, or no tokenizer can be found.
    """

    def __init__(
        self,
        folder: str | Path,
        tokenizer: str | Path | None = None,
        device: str = "cpu",
        *,
        model: Any = None,
    ) -> None:
        folder = Path(folder)
        meta = read_config(folder)
        if meta["family"] != "videopanda":
            raise ValueError(f"'{folder}': a {meta['family']} checkpoint, not videopanda")
        self.folder = folder
        # ``model``: the folder's model already loaded (leanvl serve), so it is not loaded twice
        self.model = model if model is not None else load(folder, device=device)
        self.config = self.model.config
        self.tokenizer = self._tokenizer(tokenizer)
        recipe = (meta.get("extra") or {}).get("recipe") or {}
        self.data = recipe.get("data") or {}

    def _tokenizer(self, path: str | Path | None) -> Any:
        text = (self.config.extra or {}).get("tokenizer")
        if text and path is None:
            from leanvl.training.families.videopanda_text import tokenizer_from_json

            return tokenizer_from_json(text)
        source = path or self.config.llm_path
        if source is None:
            raise ValueError(
                f"'{self.folder}': the config stores no tokenizer (extra.tokenizer) and has no "
                "llm_path; pass a tokenizer folder"
            )
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(source))

    def load_frames(self, video: str | Path) -> torch.Tensor:
        """Decode and preprocess one video: float ``(1, T, 4, S, S)``.

        Raises:
            leanvl.video.VideoDecodeError: missing, empty or undecodable file.
        """
        cfg = self.config
        if self.data:  # trained by leanvl train: the recipe's own decoding
            size = int(self.data.get("image_size") or cfg.image_size)
            sample = str(self.data.get("eval_sample") or "middle")
            frames, _ = read_frames(video, cfg.num_frames, sample=sample, size=size)
            h, w = frames.shape[1:3]
            top, left = (h - size) // 2, (w - size) // 2
            frames = frames[:, top : top + size, left : left + size]
        else:  # official sampler (1 fps, at most num_frames), native resolution
            frames, _ = read_frames(video, cfg.num_frames, sample="videopanda")
        clip = frames.permute(0, 3, 1, 2).contiguous()
        return anypixel_clip(clip, cfg).to(self.model.projector[0].weight.dtype)

    def prompt_ids(self, question: str) -> torch.Tensor:
        """``(1, N)`` ids of the evaluation prompt (``videopanda_v1``) for ``question``."""
        from leanvl.models.videopanda import build_prompt, tokenize_prompt

        prompt = build_prompt([(question, None)], "videopanda_v1", self.config.num_frames)
        ids = tokenize_prompt(prompt, self.tokenizer, self.config.image_token_index)
        return torch.tensor([ids])

    def stream(
        self, video: str | Path, question: str, max_new_tokens: int = 64, **sampling: Any
    ) -> Iterator[str]:
        """Yield the answer text piece by piece (stops at ``</s>``, which is not yielded)."""
        frames = self.load_frames(video)
        ids = self.prompt_ids(question)
        eos = self.tokenizer.eos_token_id
        done: list[int] = []
        shown = ""
        for token in stream_generate(self.model, ids, frames, max_new_tokens, eos, **sampling):
            if token == eos:
                break
            done.append(token)
            text = self.tokenizer.decode(done, skip_special_tokens=True)
            if text.startswith(shown):
                piece, shown = text[len(shown) :], text
                if piece:
                    yield piece

    def answer(
        self, video: str | Path, question: str, max_new_tokens: int = 64, **sampling: Any
    ) -> str:
        """The whole answer, stripped (a trailing ``</s>`` removed, as the official code)."""
        return "".join(self.stream(video, question, max_new_tokens, **sampling)).strip()
