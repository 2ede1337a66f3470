"""Clip transforms as batched torch ops, and the official preprocessing of each model.

Every op takes a whole clip ``(T, 3, H, W)`` (uint8 or float) and applies the same geometry to all
frames, as the official video pipelines do. Resizing uses ``torch.nn.functional.interpolate`` with
``antialias=True``, torch's port of PIL's resampling: on uint8 clips torch runs its integer
PIL-style kernel, which matched Pillow's ``Image.resize`` (BILINEAR / BICUBIC) to within one grey
level on fewer than 0.6 % of pixels in our checks (tests/video/test_transforms.py); float clips
differ from PIL by at most one level after rounding. uint8 in gives uint8 out (rounded, clamped,
as PIL does).

Presets (``build_transform``):

- ``"allinone"`` (All-in-one's ``a100`` ``VideoTransform``; Wang et al., CVPR 2023): resize the
  shorter side to ``int(1.2 * size)`` (268 for 224) bilinear → random crop (train) / centre crop
  (eval) → /255 → ImageNet normalisation.
- ``"svitt"`` (SViTT; Li et al., CVPR 2023, Singularity's transforms): train
  ``RandomResizedCrop(size, scale=(0.5, 1), bicubic)`` → random h-flip → /255 → normalise 0.5/0.5;
  eval ``Resize((size, size), bicubic)`` → /255 → normalise. The official code runs torchvision's
  *tensor* transforms on uint8 clips, which did not antialias before torchvision 0.17, so the
  ``svitt`` preset resizes without antialias (``antialias=False``, torch's bicubic a=-0.75) to
  match that code; pass your own pipeline for PIL-like resizing.
- ``"videopanda"`` (Video-Panda; Yi et al., 2024): :func:`videopanda_anypixel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
"""Per-channel (mean, std) presets for :func:`normalize`, for pixels in [0, 1]."""

VIDEOPANDA_FILL = (122, 116, 104)
"""Video-Panda's canvas colour: ``int(255 * CLIP mean)`` per channel."""

_MODES = ("nearest", "bilinear", "bicubic")


def _check_clip(clip: torch.Tensor) -> None:
    if clip.ndim != 4 or clip.shape[1] != 3:
        hint = " (frames from read_frames are (T, H, W, 3): use .permute(0, 3, 1, 2))"
        raise ValueError(f"expected a clip (T, 3, H, W), got shape {tuple(clip.shape)}{hint}")


def resize(
    clip: torch.Tensor,
    size: tuple[int, int],
    interpolation: str = "bilinear",
    antialias: bool = True,
) -> torch.Tensor:
    """Resize every frame to ``size = (H, W)``.

    Args:
        clip: ``(T, 3, H, W)`` uint8 or float.
        size: output (height, width).
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``.
        antialias: PIL-like filtering (wider kernel when downscaling; bicubic a=-0.5). Off:
            plain interpolation (bicubic a=-0.75), as torchvision tensors before 0.17.

    Returns:
        The resized clip, same dtype (uint8 rounded and clamped to [0, 255]).
    """
    _check_clip(clip)
    if interpolation not in _MODES:
        raise ValueError(f"unknown interpolation={interpolation!r}; expected one of {_MODES}")
    height, width = int(size[0]), int(size[1])
    if (height, width) == tuple(clip.shape[-2:]):
        return clip
    if interpolation == "nearest":
        return F.interpolate(clip, size=(height, width), mode="nearest-exact")
    kwargs = {"mode": interpolation, "align_corners": False, "antialias": antialias}
    if clip.dtype == torch.uint8 and antialias:
        # torch's uint8 antialiased kernel is PIL's fixed-point algorithm (nearly bit-exact).
        return F.interpolate(clip, size=(height, width), **kwargs)
    out = F.interpolate(clip.float(), size=(height, width), **kwargs)
    if clip.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(clip.dtype)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) with the shorter side ``size`` and the longer ``int(size * long / short)``."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def resize_short_side(
    clip: torch.Tensor, size: int, interpolation: str = "bilinear", antialias: bool = True
) -> torch.Tensor:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (torchvision rounding)."""
    _check_clip(clip)
    return resize(clip, short_side_size(*clip.shape[-2:], size), interpolation, antialias)


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The window ``[top:top+height, left:left+width]`` of every frame (a view)."""
    _check_clip(clip)
    h, w = clip.shape[-2:]
    if not (top >= 0 and left >= 0 and top + height <= h and left + width <= w):
        raise ValueError(f"crop {height}x{width} at ({top}, {left}) does not fit a {h}x{w} clip")
    return clip[..., top : top + height, left : left + width]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def center_crop(clip: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Centre crop with torchvision's offsets ``int(round((H - h) / 2))`` (round half to even)."""
    _check_clip(clip)
    out_h, out_w = _pair(size)
    h, w = clip.shape[-2:]
    return crop(clip, int(round((h - out_h) / 2)), int(round((w - out_w) / 2)), out_h, out_w)


def _randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(0, high, (1,), generator=generator).item())


def random_crop(
    clip: torch.Tensor, size: int | Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """One random crop for the whole clip (offsets uniform in ``[0, H - h]``, ``[0, W - w]``)."""
    _check_clip(clip)
    out_h, out_w = _pair(size)
    h, w = clip.shape[-2:]
    if out_h > h or out_w > w:
        raise ValueError(f"crop {out_h}x{out_w} is larger than the {h}x{w} clip")
    top, left = _randint(h - out_h + 1, generator), _randint(w - out_w + 1, generator)
    return crop(clip, top, left, out_h, out_w)


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop, torchvision's ``RandomResizedCrop.get_params`` rule.

    Ten tries of area ~ U(scale) and log-aspect ~ U(log ratio); then a centre crop with the
    aspect clamped to ``ratio``. The random draws are torchvision's, in its order, so with the
    same torch seed the same window is chosen (likewise :func:`random_crop` and
    :func:`random_hflip`).
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio)).tolist()
    for _ in range(10):  # the same draws, in the same order, as torchvision
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(*log_ratio, generator=generator)).item()
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return _randint(height - h + 1, generator), _randint(width - w + 1, generator), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    clip: torch.Tensor,
    size: int | Sequence[int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
    antialias: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random area/aspect window (same for all frames) and resize it to ``size``."""
    _check_clip(clip)
    top, left, h, w = random_resized_crop_params(*clip.shape[-2:], scale, ratio, generator)
    return resize(crop(clip, top, left, h, w), _pair(size), interpolation, antialias)


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right."""
    _check_clip(clip)
    return clip.flip(-1)


def random_hflip(
    clip: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror the whole clip with probability ``p``."""
    flip = torch.rand(1, generator=generator).item() < p
    return hflip(clip) if flip else clip


def normalize(
    clip: torch.Tensor,
    mean: str | Sequence[float] = "imagenet",
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel for uint8; float clips are taken as already in [0, 1].

    Args:
        clip: ``(T, 3, H, W)``.
        mean: a preset name (``"imagenet"``, ``"inception"``, ``"clip"``) or three means.
        std: three stds (only with explicit means).

    Returns:
        float32 clip.
    """
    _check_clip(clip)
    if isinstance(mean, str):
        if mean not in NORMALIZATION:
            raise ValueError(
                f"unknown normalisation {mean!r}; expected one of {list(NORMALIZATION)}"
            )
        if std is not None:
            raise ValueError("pass std only together with explicit means")
        mean, std = NORMALIZATION[mean]
    if std is None:
        raise ValueError("std is required with explicit means")
    pixels = clip.float() / 255.0 if clip.dtype == torch.uint8 else clip.float()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


def allinone_a100(
    clip: torch.Tensor, train: bool, size: int = 224, generator: torch.Generator | None = None
) -> torch.Tensor:
    """All-in-one's default ``a100`` video transform (spec allinone.md §4.3).

    Shorter side → ``int(1.2 * size)`` with PIL-like bilinear (the official helper's "nearest"
    default is inverted into bilinear by a swapped constant), random crop (train) or centre crop
    (eval) to ``size``², /255, ImageNet normalisation. No flip.
    """
    clip = resize_short_side(clip, int(1.2 * size), "bilinear")
    clip = random_crop(clip, size, generator) if train else center_crop(clip, size)
    return normalize(clip, "imagenet")


def svitt_transform(
    clip: torch.Tensor, train: bool, size: int = 224, generator: torch.Generator | None = None
) -> torch.Tensor:
    """SViTT / Singularity video transform (spec svitt.md §8); no antialias, see module docs."""
    if train:
        crop_kwargs = {"scale": (0.5, 1.0), "interpolation": "bicubic", "antialias": False}
        clip = random_resized_crop(clip, size, generator=generator, **crop_kwargs)
        clip = random_hflip(clip, 0.5, generator)
    else:
        clip = resize(clip, (size, size), "bicubic", antialias=False)
    return normalize(clip, "inception")


@dataclass(frozen=True)
class AnypixelGeometry:
    """Video-Panda's letterbox geometry for one frame size (spec videopanda.md §2.2).

    Attributes:
        new_height: resized frame height (the valid band's height when landscape).
        new_width: resized frame width.
        pre: offset of the band on the short axis (top for landscape, left otherwise).
        landscape: ``W > H`` (squares count as portrait, as in the official code).
    """

    new_height: int
    new_width: int
    pre: int
    landscape: bool


def anypixel_geometry(
    height: int, width: int, image_size: int = 448, teacher_size: int = 224, patch: int = 14
) -> AnypixelGeometry:
    """Sizes computed at the teacher resolution, then scaled by ``image_size / teacher_size``.

    Landscape (``W > H``): width ``teacher_size``, ``vp = ceil(teacher_size * H / W / patch)``
    patches high; otherwise the same with the axes swapped. ``pre = ((teacher_size // patch -
    vp) // 2) * patch``. 16:9 → a 252 px band at 448, 4:3 → 336 px, square → 448 px.
    """
    if image_size % teacher_size or teacher_size % patch:
        raise ValueError(
            f"image_size={image_size} must be a multiple of teacher_size={teacher_size}, "
            f"itself a multiple of patch={patch}"
        )
    ratio = image_size // teacher_size
    max_patches = teacher_size // patch
    landscape = width > height
    short, long = (height, width) if landscape else (width, height)
    patches = math.ceil(teacher_size * short / long / patch)
    pre = ((max_patches - patches) // 2) * patch * ratio
    band = patch * patches * ratio
    if landscape:
        return AnypixelGeometry(band, image_size, pre, True)
    return AnypixelGeometry(image_size, band, pre, False)


def _resize_pil(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    from PIL import Image

    frames = []
    for frame in clip.permute(0, 2, 3, 1).contiguous().numpy():
        image = Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC)
        frames.append(torch.from_numpy(np.asarray(image).copy()))
    return torch.stack(frames).permute(0, 3, 1, 2)


def videopanda_anypixel(
    clip: torch.Tensor,
    image_size: int = 448,
    teacher_size: int = 224,
    patch: int = 14,
    num_frames: int = 8,
    fill: tuple[int, int, int] = VIDEOPANDA_FILL,
    resample: str = "torch",
    flip: bool = False,
) -> torch.Tensor:
    """Video-Panda's "anypixel" input: aspect-kept resize, letterbox, CLIP norm, mask channel.

    Each frame is resized bicubic to :func:`anypixel_geometry` (from the first frame's size),
    pasted into an ``image_size``² canvas of colour ``fill`` at offset ``pre`` on the short axis,
    normalised with the CLIP mean/std; a fourth channel is 1 on the pasted band and 0 elsewhere.
    Clips shorter than ``num_frames`` get all-zero ``(4, S, S)`` frames appended (mask 0 too).

    Args:
        clip: uint8 ``(T, 3, H, W)``, ``T <= num_frames``.
        image_size: canvas side S (448 released).
        teacher_size: side the geometry is computed at (224 released).
        patch: teacher patch size (14 released).
        num_frames: frames per video after padding (8 released).
        fill: canvas RGB colour (uint8).
        resample: ``"torch"`` (antialiased bicubic on uint8, ≤ 1 grey level from PIL on a few
            pixels) or ``"pil"`` (Pillow BICUBIC, bit-exact with the official code).
        flip: mirror the pixels (not the mask), the official ``RandomHorizontalFlipVideo``
            branch; the official code flips at random even at inference, leanvl never by default.

    Returns:
        float32 ``(num_frames, 4, S, S)``, channels ``[R, G, B, mask]``.
    """
    _check_clip(clip)
    if clip.dtype != torch.uint8:
        raise ValueError(f"videopanda_anypixel expects uint8 frames, got {clip.dtype}")
    if not 1 <= clip.shape[0] <= num_frames:
        raise ValueError(f"expected 1..{num_frames} frames, got {clip.shape[0]}")
    geo = anypixel_geometry(*clip.shape[-2:], image_size, teacher_size, patch)
    if resample == "pil":
        resized = _resize_pil(clip, geo.new_height, geo.new_width)
    elif resample == "torch":
        resized = resize(clip, (geo.new_height, geo.new_width), "bicubic")
    else:
        raise ValueError(f"unknown resample={resample!r}; expected 'torch' or 'pil'")
    canvas = torch.tensor(fill, dtype=torch.uint8).view(1, 3, 1, 1)
    canvas = canvas.expand(clip.shape[0], 3, image_size, image_size).clone()
    mask = torch.zeros(clip.shape[0], 1, image_size, image_size)
    top, left = (geo.pre, 0) if geo.landscape else (0, geo.pre)
    canvas[..., top : top + geo.new_height, left : left + geo.new_width] = resized
    mask[..., top : top + geo.new_height, left : left + geo.new_width] = 1.0
    pixels = normalize(canvas, "clip")
    if flip:
        pixels = pixels.flip(-1)
    frames = torch.cat([pixels, mask], dim=1)
    padding = frames.new_zeros(num_frames - frames.shape[0], 4, image_size, image_size)
    return torch.cat([frames, padding])


class VideoTransform:
    """A named preprocessing pipeline: ``transform(clip_uint8_T3HW, generator=None)``.

    Built by :func:`build_transform`; returns float32 ``(T, 3, S, S)`` (``(8, 4, S, S)`` for
    ``"videopanda"``).
    """

    def __init__(self, name: str, train: bool, size: int):
        self.name, self.train, self.size = name, train, size

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None):
        """Apply the pipeline to one clip."""
        if self.name == "allinone":
            return allinone_a100(clip, self.train, self.size, generator)
        if self.name == "svitt":
            return svitt_transform(clip, self.train, self.size, generator)
        return videopanda_anypixel(clip, image_size=self.size, teacher_size=self.size // 2)

    def __repr__(self) -> str:
        return f"VideoTransform(name={self.name!r}, train={self.train}, size={self.size})"


TRANSFORM_NAMES = ("allinone", "svitt", "videopanda")


def build_transform(name: str, train: bool = False, size: int | None = None) -> VideoTransform:
    """The official preprocessing of a model family.

    Args:
        name: ``"allinone"`` (alias ``"a100"``), ``"svitt"`` or ``"videopanda"``.
        train: training augmentation (random crop / flip) instead of the evaluation path.
            ``"videopanda"`` has none (its random flip is left out, see
            :func:`videopanda_anypixel`).
        size: output side (224 for All-in-one and SViTT, 448 for Video-Panda by default).

    Raises:
        ValueError: unknown name, or a Video-Panda size that is not a multiple of 28.
    """
    name = "allinone" if name == "a100" else name
    if name not in TRANSFORM_NAMES:
        raise ValueError(f"unknown transform {name!r}; expected one of {TRANSFORM_NAMES}")
    if size is None:
        size = 448 if name == "videopanda" else 224
    if name == "videopanda" and size % 28:
        raise ValueError(f"videopanda size must be a multiple of 28 (2 x patch 14), got {size}")
    return VideoTransform(name, train, size)
