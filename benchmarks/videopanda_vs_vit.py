"""Video-Panda's STAB + projector against a ViT-L/14 video encoder on the same 8 frames (CPU).

Yi et al., "Video-Panda: Parameter-efficient Alignment for Encoder-free Video-Language Models"
(CVPR 2025, arXiv 2412.18609), Table 3: the vision part of Video-Panda (45M parameters,
105.5 GFLOPs, 41 ms on their GPU) against Video-LLaVA's (LanguageBind ViT-L/14 + projector,
425M, 864.1 GFLOPs, 125 ms) and Video-ChatGPT's -- the "3-4x faster" claim.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/videopanda_vs_vit.py [--runs 3] [--vit-runs 2]
        [--threads 2] [--device cpu|cuda] [--dtype float32|bfloat16] [--json out.json]

What is measured, for one video of 8 square frames (random pixels, random weights,
``--dtype`` (fp32 by default) on ``--device`` (CPU by default), ``torch.inference_mode``):

* **Video-Panda**: ``videopanda_7b``'s STAB + ``mlp2x_gelu`` projector (45,066,578 parameters)
  on the anypixel input ``(1, 8, 4, 448, 448)``; visual tokens per video = sum of
  ``1 + h*(w+1)`` over frames (2184).
* **ViT-L/14 baseline**: a plain ViT-L/14 at 224 px (width 1024, 24 blocks, 16 heads, 257
  tokens per frame: leanvl's All-in-one ViT with those sizes, frames run independently, no
  temporal attention -- LanguageBind's adds some) on the same 8 frames resized to 224, plus the
  same ``mlp2x_gelu`` projector on its 256 patch tokens per frame (Video-LLaVA's recipe):
  2048 visual tokens.

FLOPs are counted by :func:`leanvl.bench.count_flops` (attention from its real shapes, one
multiply-add = 2 FLOPs, cross-checked against torch's FlopCounterMode); time is the median
wall time of ``--runs`` forwards after one warm-up. The LLM is not part of either number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from leanvl.bench import count_flops  # noqa: E402
from leanvl.bench.timing import time_callable  # noqa: E402
from leanvl.models.videopanda import build_projector  # noqa: E402
from leanvl.registry import create_model  # noqa: E402


class _VideoPandaVision(nn.Module):
    """STAB + projector of a Video-Panda model (what Table 3 calls the vision part)."""

    def __init__(self, panda: nn.Module) -> None:
        super().__init__()
        self.stab, self.projector = panda.stab, panda.projector

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        out = self.stab(frames)
        return self.projector(torch.cat(out.tokens))


class _ViTVision(nn.Module):
    """A per-frame ViT (All-in-one's transformer at ViT-L/14 sizes) + mlp2x_gelu projector on
    its patch tokens (the [CLS] token dropped)."""

    def __init__(self, vit: nn.Module, llm_width: int) -> None:
        super().__init__()
        self.vit = vit.transformer
        self.prefix = vit.config.num_prefix_tokens
        self.projector = build_projector("mlp2x_gelu", vit.config.hidden_size, llm_width)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.vit.embed(frames, 1, None)
        for block in self.vit.blocks:
            x = block(x, None)
        x = self.vit.norm(x)
        return self.projector(x[:, self.prefix :].flatten(0, 1))


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(
    runs: int, vit_runs: int, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> dict:
    """Tokens, parameters, FLOPs and latency of both vision parts on ``device``."""
    torch.manual_seed(0)
    panda = _VideoPandaVision(create_model("videopanda_7b")).eval()
    frames = torch.randn(1, 8, 4, 448, 448)
    frames[:, :, 3] = 1.0  # square frames: every patch valid
    vit_model = create_model(
        "allinone_tiny",
        hidden_size=1024,
        depth=24,
        num_heads=16,
        patch_size=14,
        image_size=224,
        num_frames=1,
        vtc_dim=0,
        num_answers=0,
        mc_vqa_head=False,
    )
    vit = _ViTVision(vit_model, 4096).eval()
    vit_frames = torch.nn.functional.interpolate(frames[0, :, :3], size=224, mode="bilinear")
    panda, vit = panda.to(device, dtype), vit.to(device, dtype)
    frames, vit_frames = frames.to(device, dtype), vit_frames.to(device, dtype)
    results = {}
    for name, model, x, n in (
        ("videopanda_stab_projector", panda, frames, runs),
        ("vit_l14_projector", vit, vit_frames, vit_runs),
    ):
        with torch.inference_mode():
            flops, out = count_flops(lambda m=model, x=x: m(x), model)
            timing = time_callable(lambda m=model, x=x: m(x), device, runs=n, warmup=1)
        results[name] = {
            "params": _params(model),
            "visual_tokens": int(out.shape[0]),
            "gflops": flops.total / 1e9,
            "gflops_by_component": {k: v / 1e9 for k, v in flops.by_component.items()},
            "flop_crosscheck": flops.crosscheck,
            "median_s": timing.median_s,
            "runs": n,
        }
    a, b = results["videopanda_stab_projector"], results["vit_l14_projector"]
    results["ratios_vit_over_videopanda"] = {
        "params": b["params"] / a["params"],
        "gflops": b["gflops"] / a["gflops"],
        "time": b["median_s"] / a["median_s"],
    }
    return results


def main() -> None:
    """Parse arguments, measure, print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed Video-Panda forwards")
    parser.add_argument("--vit-runs", type=int, default=2, help="timed ViT-L/14 forwards")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = measure(args.runs, args.vit_runs, args.device, getattr(torch, args.dtype))
    results["environment"] = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "loadavg": os.getloadavg(),
    }
    print(f"{'vision part':28} {'params':>12} {'tokens':>7} {'GFLOPs':>9} {'median s':>9}")
    for name in ("videopanda_stab_projector", "vit_l14_projector"):
        r = results[name]
        print(
            f"{name:28} {r['params']:>12,} {r['visual_tokens']:>7} {r['gflops']:>9.1f} "
            f"{r['median_s']:>9.2f}"
        )
    ratio = results["ratios_vit_over_videopanda"]
    print(
        f"ViT-L/14 / Video-Panda: params x{ratio['params']:.1f}, FLOPs x{ratio['gflops']:.1f}, "
        f"time x{ratio['time']:.1f}  (load average {results['environment']['loadavg'][0]:.1f})"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
