"""Fixtures of the tools tests: a small synthetic benchmark, an untrained and a trained
``allinone_tiny`` saved as leanvl checkpoint folders."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import leanvl
from leanvl.data.annotations import read_retrieval_json
from leanvl.data.synth import SynthConfig, generate
from leanvl.text.tokenizer import load_tokenizer
from leanvl.video import read_frames
from leanvl.video.transforms import NORMALIZATION

FRAMES, SIZE = 3, 64
# Recipe metadata as the training engine stores it: the adapter then decodes clips the way
# they were decoded for training (shorter side SIZE, centre crop, ImageNet normalisation).
RECIPE = {"data": {"num_frames": FRAMES, "image_size": SIZE, "eval_sample": "middle"}}
MODEL = {
    "num_frames": FRAMES,
    "patch_size": 8,
    "vtc_dim": 64,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
}


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """12 test clips of the synthetic benchmark (no training clips)."""
    out = tmp_path_factory.mktemp("synth_small") / "data"
    cfg = SynthConfig(train=0, val=0, test=12, frames=4, size=64, workers=1, preview=0)
    return generate(out, cfg)


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory) -> Path:
    """A seeded, untrained ``allinone_tiny`` checkpoint folder."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("untrained") / "model"
    leanvl.save_model(leanvl.create_model("allinone_tiny", **MODEL), folder, extra=RECIPE)
    return folder


def _decode(path: Path) -> torch.Tensor:
    frames, _ = read_frames(path, FRAMES, sample="middle", size=SIZE)
    h, w = frames.shape[1:3]
    top, left = (h - SIZE) // 2, (w - SIZE) // 2
    return frames[:, top : top + SIZE, left : left + SIZE]


def _prepare(video: torch.Tensor) -> torch.Tensor:
    x = video.permute(0, 1, 4, 2, 3).float().div(255.0)
    mean, std = NORMALIZATION["imagenet"]
    return (x - torch.tensor(mean).view(1, 1, 3, 1, 1)) / torch.tensor(std).view(1, 1, 3, 1, 1)


def train_vtc(data: Path, folder: Path, steps: int, batch: int = 32, lr: float = 1e-3) -> Path:
    """Train ``allinone_tiny`` with the symmetric VTC InfoNCE loss (temperature 0.07) on the
    ``ret_train`` split of ``data``: a plain seeded PyTorch loop, clips decoded once."""
    torch.manual_seed(0)
    rng = random.Random(0)
    records = read_retrieval_json(data / "annotations" / "ret_train.json")
    clips = torch.stack([_decode(data / "videos" / r.video) for r in records])
    tokenizer = load_tokenizer(max_length=40)
    model = leanvl.create_model("allinone_tiny", **MODEL).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 10)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        idx = rng.sample(range(len(records)), batch)
        enc = tokenizer(
            [rng.choice(records[i].captions) for i in idx], padding="longest", return_tensors="pt"
        )
        v = F.normalize(model.encode_video(_prepare(clips[idx])), dim=-1)
        t = F.normalize(model.encode_text(enc["input_ids"], enc["attention_mask"]), dim=-1)
        logits = t @ v.t() / 0.07
        labels = torch.arange(batch)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    leanvl.save_model(model.eval(), folder, extra={**RECIPE, "final_loss": loss.item()})
    return folder
