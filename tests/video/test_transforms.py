"""Clip transforms: numerics against PIL / hand values, and the per-model pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from leanvl.video import build_transform
from leanvl.video import transforms as T
from tests.conftest import GOLDEN


def _smooth_clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A natural-looking uint8 clip (upsampled noise), so resampling differences are typical."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, height // 8 + 1, width // 8 + 1, generator=g) * 255
    return F.interpolate(coarse, size=(height, width), mode="bilinear").round().to(torch.uint8)


def _pil_resize(clip: torch.Tensor, height: int, width: int, resample) -> torch.Tensor:
    frames = [
        np.asarray(Image.fromarray(f.permute(1, 2, 0).numpy()).resize((width, height), resample))
        for f in clip
    ]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("out", [(224, 398), (300, 500), (50, 70)])
def test_resize_matches_pil_within_one_level(mode, out):
    clip = _smooth_clip(2, 180, 320)
    ours = T.resize(clip, out, mode)
    pil_mode = Image.Resampling.BILINEAR if mode == "bilinear" else Image.Resampling.BICUBIC
    diff = (ours.int() - _pil_resize(clip, *out, pil_mode).int()).abs()
    assert ours.dtype == torch.uint8 and diff.max() <= 2
    assert diff.float().mean() < 0.01


def test_resize_short_side_and_float_passthrough():
    clip = _smooth_clip(1, 272, 640)
    assert T.resize_short_side(clip, 224).shape == (1, 3, 224, 527)  # int(224 * 640 / 272)
    assert T.resize_short_side(clip.transpose(2, 3), 224).shape == (1, 3, 527, 224)
    as_float = T.resize(clip.float(), (100, 200))
    assert as_float.dtype == torch.float32
    assert (as_float.round() - T.resize(clip, (100, 200)).float()).abs().max() <= 1
    with pytest.raises(ValueError, match=r"permute\(0, 3, 1, 2\)"):
        T.resize(torch.zeros(2, 10, 10, 3, dtype=torch.uint8), (5, 5))


def _position_clip(height: int, width: int) -> torch.Tensor:
    """Pixel (y, x) of every channel holds y * 1000 + x (int64), frames identical."""
    grid = torch.arange(height).view(-1, 1) * 1000 + torch.arange(width).view(1, -1)
    return grid.expand(2, 3, height, width).clone()


def test_center_crop_offsets():
    out = T.center_crop(_position_clip(268, 300), 224)
    assert out[0, 0, 0, 0] == 22 * 1000 + 38  # round(44 / 2), round(76 / 2)
    out = T.center_crop(_position_clip(225, 227), 224)  # round(0.5) = 0, round(1.5) = 2
    assert out[0, 0, 0, 0] == 0 * 1000 + 2 and out.shape[-2:] == (224, 224)


def test_random_crop_is_one_window_per_clip_and_seeded():
    clip = _position_clip(50, 60)
    out = T.random_crop(clip, (20, 30), torch.Generator().manual_seed(0))
    top, left = divmod(int(out[0, 0, 0, 0]), 1000)
    assert torch.equal(out, clip[..., top : top + 20, left : left + 30])
    assert 0 <= top <= 30 and 0 <= left <= 30
    again = T.random_crop(clip, (20, 30), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    corners = {int(T.random_crop(clip, 20)[0, 0, 0, 0]) for _ in range(30)}
    assert len(corners) > 10


def test_random_resized_crop_params_respect_scale_and_ratio():
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        top, left, h, w = T.random_resized_crop_params(272, 640, (0.5, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top <= 272 - h and 0 <= left <= 640 - w
        assert 0.5 * 272 * 640 * 0.9 <= h * w <= 272 * 640
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
    # impossible aspect: falls back to the centred crop with ratio clamped
    assert T.random_resized_crop_params(10, 1000, (0.99, 1.0), (1.0, 1.0), g) == (0, 495, 10, 10)


def test_hflip_and_normalize_values():
    clip = _position_clip(4, 5)
    assert torch.equal(T.hflip(clip)[..., 0], clip[..., 4])
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    black = torch.zeros_like(white)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected_white = torch.tensor([(1 - m) / s for m, s in zip(mean, std, strict=True)])
    assert torch.allclose(T.normalize(white)[0, :, 0, 0], expected_white)
    assert torch.allclose(T.normalize(black, "inception"), torch.full((1, 3, 2, 2), -1.0))
    assert torch.allclose(T.normalize(white, "inception"), torch.full((1, 3, 2, 2), 1.0))
    clip_mean = T.normalize(torch.full((1, 3, 1, 1), 122, dtype=torch.uint8), "clip")
    assert clip_mean[0, 0, 0, 0].item() == pytest.approx(
        (122 / 255 - 0.48145466) / 0.26862954, rel=1e-5
    )
    with pytest.raises(ValueError, match="unknown normalisation 'imagnet'"):
        T.normalize(white, "imagnet")


def test_allinone_eval_pipeline_against_pil():
    clip = _smooth_clip(3, 272, 640)
    out = build_transform("allinone", train=False, size=224)(clip)
    assert out.shape == (3, 3, 224, 224) and out.dtype == torch.float32
    # reference: PIL bilinear shorter side 268 (-> 268 x 630), centre crop offsets (22, 203)
    ref = _pil_resize(clip, 268, 630, Image.Resampling.BILINEAR)[..., 22:246, 203:427]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = (ref.float() / 255 - mean) / std
    assert (out - ref).abs().max() <= 2 / 255 / 0.224 + 1e-6


def test_allinone_train_random_crop_is_inside_the_resized_clip():
    clip = _smooth_clip(2, 272, 640)
    g = torch.Generator().manual_seed(3)
    out = T.allinone_a100(clip, train=True, generator=g)
    resized = T.normalize(T.resize_short_side(clip, 268), "imagenet")
    hits = [
        (top, left)
        for top in range(268 - 224 + 1)
        for left in range(0, 630 - 224 + 1)
        if torch.equal(resized[0, 0, top, left : left + 3], out[0, 0, 0, :3])
        and torch.equal(resized[..., top : top + 224, left : left + 224], out)
    ]
    assert len(hits) == 1


def test_svitt_pipelines():
    clip = _smooth_clip(2, 180, 320)
    out = build_transform("svitt", train=False)(clip)
    ref = F.interpolate(clip.float(), size=(224, 224), mode="bicubic", align_corners=False)
    ref = ref.round().clamp(0, 255) / 255 * 2 - 1
    assert torch.allclose(out, ref, atol=1e-6)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    train = build_transform("svitt", train=True)
    a, b = train(clip, g1), train(clip, g2)
    assert torch.equal(a, b) and a.shape == (2, 3, 224, 224)
    assert a.min() >= -1 and a.max() <= 1


@pytest.mark.parametrize(
    ("height", "width", "band", "pre", "landscape"),
    [
        (1080, 1920, 252, 84, True),  # 16:9: ceil(224 * 9 / 16 / 14) = 9 patches -> 9 * 28
        (480, 640, 336, 56, True),  # 4:3: 12 patches
        (500, 500, 448, 0, False),  # square counts as portrait
        (1920, 1080, 252, 84, False),  # portrait: pillarbox
        (100, 300, 168, 140, True),  # ceil(5.33) = 6 patches; pre = (16 - 6) // 2 * 14 * 2
    ],
)
def test_anypixel_geometry(height, width, band, pre, landscape):
    geo = T.anypixel_geometry(height, width)
    assert (geo.pre, geo.landscape) == (pre, landscape)
    assert (geo.new_height if landscape else geo.new_width) == band
    assert (geo.new_width if landscape else geo.new_height) == 448


def test_videopanda_anypixel_layout():
    clip = _smooth_clip(5, 90, 160)  # 16:9, 5 frames -> 3 zero frames appended
    out = build_transform("videopanda")(clip)
    assert out.shape == (8, 4, 448, 448)
    mask = out[:5, 3]
    assert torch.equal(
        mask.sum(dim=2)[0], torch.tensor([448.0 if 84 <= y < 336 else 0.0 for y in range(448)])
    )
    fill = T.normalize(torch.tensor(T.VIDEOPANDA_FILL, dtype=torch.uint8).view(1, 3, 1, 1), "clip")
    assert torch.allclose(out[:5, :3, :84], fill.expand(5, 3, 84, 448))
    assert torch.allclose(out[:5, :3, 336:], fill.expand(5, 3, 112, 448))
    assert torch.equal(out[5:], torch.zeros(3, 4, 448, 448))
    flipped = T.videopanda_anypixel(clip, flip=True)
    assert torch.equal(flipped[:5, :3], out[:5, :3].flip(-1)) and torch.equal(
        flipped[:, 3], out[:, 3]
    )


def test_videopanda_anypixel_golden():
    path = GOLDEN / "videopanda" / "io.safetensors"
    if not path.exists():
        pytest.skip("Video-Panda golden fixture not present")
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    for b, name in enumerate("AB"):  # A: 27x48 (16:9, 6 frames), B: 40x40 (square, 8 frames)
        raw = tensors[f"input.raw_frames_{name}"].permute(0, 3, 1, 2)
        expected = tensors["input.frames"][b]
        exact = T.videopanda_anypixel(raw, 72, 36, 4, resample="pil")
        assert torch.equal(exact, expected)
        close = T.videopanda_anypixel(raw, 72, 36, 4)  # torch resampling: <= 2 grey levels
        assert torch.equal(close[:, 3], expected[:, 3])
        assert (close - expected).abs().max() <= 2 / 255 / 0.26 + 1e-6


def test_build_transform_errors():
    with pytest.raises(ValueError, match="unknown transform 'allinon'"):
        build_transform("allinon")
    with pytest.raises(ValueError, match="multiple of 28"):
        build_transform("videopanda", size=300)
    assert build_transform("a100").name == "allinone"
