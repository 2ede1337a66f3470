"""End-to-end answer latency of Video-Panda: frames -> STAB -> LLM prefill -> greedy decoding.

Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free Video-Language Models"
(CVPR 2025, arXiv 2412.18609). What ``leanvl ask`` does after decoding the video, timed part by
part on one prompt (batch 1):

* **preprocess**: the "anypixel" preprocessing (``anypixel_clip``, what ``leanvl ask`` calls)
  of ``--frames`` decoded RGB frames of ``--height`` x ``--width`` pixels, on the CPU as in
  ``leanvl ask``, then the copy to the device;
* **encode**: STAB + projector (``VideoPanda.encode_videos``);
* **time to first token**: encode + splice + the LLM prefill over the visual tokens and the
  prompt + the first greedy token (``VideoPanda.decode_steps``, the loop ``generate`` uses);
* **per token**: one cached decoding step (median over the answer's tokens);
* **answer**: time to first token + ``--new-tokens - 1`` steps (EOS disabled, so every answer
  has the same length).

The LLM is built from its architecture with random weights (no download): ``--llm 7b`` is
Vicuna-7B v1.5's configuration (what the released Video-Panda uses), ``--llm tiny`` the
``videopanda_tiny`` preset's 2-layer Llama (for a smoke run on CPU). On CUDA the model is built
directly on the GPU. Random weights change no shape, so the cost is that of the real model.

Usage::

    python benchmarks/videopanda_answer_latency.py --device cuda --dtype bfloat16 --llm 7b
    OMP_WAIT_POLICY=PASSIVE python benchmarks/videopanda_answer_latency.py --llm tiny
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from leanvl.bench.timing import synchronize  # noqa: E402
from leanvl.evaluation.videopanda_answer import anypixel_clip  # noqa: E402
from leanvl.models.videopanda import (  # noqa: E402
    LlamaArchitecture,
    build_prompt,
    videopanda_7b,
    videopanda_tiny,
)

PROMPT = "What is happening in this video? Describe the order of events."


def _now(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


def build(llm: str, device: torch.device, dtype: torch.dtype, frames: int):
    """The model (random weights) in eval mode on ``device``/``dtype``."""
    torch.manual_seed(0)
    with device:  # parameters are created (and initialised) where they will run
        if llm == "7b":
            model = videopanda_7b(
                llm=dataclasses.asdict(LlamaArchitecture()), llm_path=None, num_frames=frames
            )
        else:
            model = videopanda_tiny(num_frames=frames)
    return model.to(dtype=dtype).eval()


def prompt_ids(model, frames: int, length: int) -> torch.Tensor:
    """``(1, N)`` ids of the evaluation prompt: the template's frame placeholders and random
    text ids standing in for the tokenized words (about 1.3 ids per character of English)."""
    cfg = model.config
    text = build_prompt([(PROMPT, None)], "videopanda_v1", frames)
    pieces = text.split("<image>")
    vocab = model.language_model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids: list[int] = []
    per_piece = max(1, length // len(pieces))
    for i, _ in enumerate(pieces):
        if i:
            ids.append(cfg.image_token_index)
        ids.extend(torch.randint(3, vocab, (per_piece,), generator=gen).tolist())
    return torch.tensor([ids])


def measure(args: argparse.Namespace) -> dict:
    """Time every part of ``--runs`` answers (after one warm-up answer)."""
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    t0 = time.perf_counter()
    model = build(args.llm, device, dtype, args.frames)
    build_s = time.perf_counter() - t0
    cfg = model.config
    ids = prompt_ids(model, args.frames, args.prompt_tokens).to(device)
    raw = torch.randint(0, 256, (args.frames, 3, args.height, args.width), dtype=torch.uint8)

    def preprocess() -> torch.Tensor:
        return anypixel_clip(raw, cfg).to(device=device, dtype=dtype)

    samples: dict[str, list[float]] = {k: [] for k in ("preprocess", "encode", "ttft", "answer")}
    steps_s: list[float] = []
    visual_tokens = 0
    with torch.inference_mode():
        for run in range(args.runs + 1):
            start = _now(device)
            frames = preprocess()
            t_pre = _now(device)
            tokens, _ = model.encode_videos(frames)
            t_enc = _now(device)
            visual_tokens = sum(len(t) for t in tokens)
            del tokens
            t_start = _now(device)
            loop = model.decode_steps(ids, frames)
            token, _ = next(loop)
            t_first = _now(device)
            run_steps = []
            for _ in range(args.new_tokens - 1):
                s = _now(device)
                token, _ = loop.send(token)
                run_steps.append(_now(device) - s)
            loop.close()
            end = _now(device)
            if run == 0:  # warm-up: allocator, kernels, cuBLAS heuristics
                continue
            samples["preprocess"].append(t_pre - start)
            samples["encode"].append(t_enc - t_pre)
            samples["ttft"].append(t_first - t_start)
            samples["answer"].append(end - t_start)
            steps_s.extend(run_steps)
    result = {
        "llm": "Vicuna-7B v1.5 architecture" if args.llm == "7b" else "videopanda_tiny Llama",
        "llm_parameters": sum(p.numel() for p in model.language_model.parameters()),
        "stab_projector_parameters": sum(
            p.numel() for n, p in model.named_parameters() if not n.startswith("llm.")
        ),
        "frames": args.frames,
        "input_pixels": [args.height, args.width],
        "visual_tokens": visual_tokens,
        "prompt_text_tokens": int((ids != cfg.image_token_index).sum()),
        "new_tokens": args.new_tokens,
        "build_s": build_s,
        "runs": args.runs,
        **{f"{k}_median_s": statistics.median(v) for k, v in samples.items()},
        "per_token_median_s": statistics.median(steps_s) if steps_s else None,
        "tokens_per_s": 1.0 / statistics.median(steps_s) if steps_s else None,
        "samples_s": samples,
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def main() -> None:
    """Parse arguments, measure, print a summary and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--llm", default="tiny", choices=["7b", "tiny"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=720, help="decoded frame height")
    parser.add_argument("--width", type=int, default=1280, help="decoded frame width")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="text ids of the prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="answer length")
    parser.add_argument("--runs", type=int, default=3, help="timed answers after one warm-up")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    result = measure(args)
    result["environment"] = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "loadavg": os.getloadavg(),
    }
    r = result
    print(
        f"{r['llm']} ({r['llm_parameters'] / 1e9:.2f}B) + STAB/projector "
        f"({r['stab_projector_parameters'] / 1e6:.1f}M), {args.frames} frames "
        f"{args.height}x{args.width} -> {r['visual_tokens']} visual tokens, "
        f"{r['prompt_text_tokens']} prompt ids, {args.new_tokens} new tokens, "
        f"{args.device} {args.dtype}"
    )
    ms = {k: r[f"{k}_median_s"] * 1e3 for k in ("preprocess", "encode", "ttft")}
    parts = [
        f"preprocess {ms['preprocess']:.1f} ms",
        f"encode {ms['encode']:.1f} ms",
        f"first token {ms['ttft']:.1f} ms",
        f"per token {r['per_token_median_s'] * 1e3:.2f} ms ({r['tokens_per_s']:.1f} tok/s)",
        f"answer {r['answer_median_s']:.3f} s",
        f"runs {args.runs}",
    ]
    if "peak_memory_gib" in r:
        parts.append(f"peak {r['peak_memory_gib']:.1f} GiB")
    print(" | ".join(parts))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
