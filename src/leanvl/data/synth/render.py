"""Render a synthetic :class:`~leanvl.data.synth.scene.Scene` to RGB frames with numpy.

Shapes are drawn from signed distance functions evaluated for all frames at once on the pixels
an object can reach (its bounding box over the clip), with one pixel of anti-aliasing
(coverage = clamp(0.5 - distance_in_pixels, 0, 1)). Everything is a pure function of the scene
and the frame size, so the same scene always gives the same frames, and a reversed scene gives
the reversed frames (up to float rounding of the interpolation, i.e. at most one grey level).
"""

from __future__ import annotations

import math

import numpy as np

from leanvl.data.synth.scene import SHAPE_EXTENT, Background, Scene, object_track

_SQRT2 = math.sqrt(2.0)


def _polygon_halfplanes(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals and offsets of a convex polygon's edges (``n·p - h <= 0`` inside)."""
    centroid = vertices.mean(axis=0)
    normals, offsets = [], []
    for a, b in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        edge = b - a
        normal = np.array([edge[1], -edge[0]]) / np.hypot(*edge)
        if normal @ (a - centroid) < 0:
            normal = -normal
        normals.append(normal)
        offsets.append(normal @ a)
    return np.asarray(normals, dtype=np.float32), np.asarray(offsets, dtype=np.float32)


def _regular(n: int, radius: float, phase_deg: float) -> np.ndarray:
    angles = np.deg2rad(phase_deg + 360.0 * np.arange(n) / n)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star_pieces(outer: float = 1.3, inner: float = 0.55) -> list[tuple[np.ndarray, np.ndarray]]:
    tips = _regular(5, outer, -90.0)
    valleys = _regular(5, inner, -90.0 + 36.0)
    pieces = [_polygon_halfplanes(valleys)]
    for k in range(5):
        pieces.append(_polygon_halfplanes(np.stack([valleys[k - 1], tips[k], valleys[k]])))
    return pieces


_TRIANGLE = _polygon_halfplanes(_regular(3, 1.25, -90.0))  # apex up (y grows downwards)
_STAR = _star_pieces()


def _convex_sdf(px: np.ndarray, py: np.ndarray, planes) -> np.ndarray:
    normals, offsets = planes
    d = None
    for (nx, ny), h in zip(normals, offsets, strict=True):
        term = nx * px + ny * py - h
        d = term if d is None else np.maximum(d, term)
    return d


def shape_sdf(shape: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to ``shape`` of unit size, at local coordinates.

    Sizes are chosen so all shapes have a similar area (about that of the unit circle) and fit
    within :data:`~leanvl.data.synth.scene.SHAPE_EXTENT`. Polygons use the max of their edge
    half-planes, exact inside and a close bound outside (enough for one-pixel anti-aliasing).
    """
    ax, ay = np.abs(px), np.abs(py)
    if shape == "circle":
        return np.sqrt(px * px + py * py) - 1.0
    if shape == "square":
        return np.maximum(ax, ay) - 0.9
    if shape == "diamond":
        return (ax + ay - 1.2) / _SQRT2
    if shape == "cross":
        return np.minimum(np.maximum(ax - 1.1, ay - 0.38), np.maximum(ax - 0.38, ay - 1.1))
    if shape == "triangle":
        return _convex_sdf(px, py, _TRIANGLE)
    if shape == "star":
        pieces = [_convex_sdf(px, py, planes) for planes in _STAR]
        return np.minimum.reduce(pieces)
    raise ValueError(f"unknown shape {shape!r}")


def _interp_matrix(out_size: int, in_size: int) -> np.ndarray:
    """Linear interpolation weights (out_size, in_size) mapping a coarse grid to pixel centres."""
    pos = (np.arange(out_size) + 0.5) / out_size * (in_size - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, in_size - 2)
    frac = pos - lo
    m = np.zeros((out_size, in_size))
    m[np.arange(out_size), lo] = 1.0 - frac
    m[np.arange(out_size), lo + 1] = frac
    return m


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    grid = rng.uniform(-1.0, 1.0, (cells, cells))
    m = _interp_matrix(size, cells)
    return m @ grid @ m.T


def render_background(background: Background, size: int) -> np.ndarray:
    """The background as a float32 (size, size, 3) image in 0..255."""
    c1 = np.asarray(background.color, dtype=np.float32)
    c2 = np.asarray(background.color2, dtype=np.float32)
    image = np.broadcast_to(c1, (size, size, 3)).astype(np.float32)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    if background.kind == "gradient":
        cos, sin = math.cos(background.angle), math.sin(background.angle)
        proj = coords[None, :] * cos + coords[:, None] * sin
        t = 0.5 + proj / (abs(cos) + abs(sin))
        image = c1 + (c2 - c1) * t[..., None]
    elif background.kind == "noise":
        rng = np.random.default_rng(background.seed)
        noise = 26.0 * _smooth_noise(rng, size, 7) + 12.0 * _smooth_noise(rng, size, 15)
        image = image + noise[..., None].astype(np.float32)
    elif background.kind == "clutter":
        image = image.copy()
        _draw_clutter(image, background, size)
    return np.clip(image, 0.0, 255.0).astype(np.float32)


def _draw_clutter(image: np.ndarray, background: Background, size: int) -> None:
    """Small grey marks (dots, bars, rings) a few shades off the base colour."""
    rng = np.random.default_rng(background.seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u, v = (xs + 0.5) / size, (ys + 0.5) / size
    base = float(np.mean(background.color))
    for _ in range(int(rng.integers(10, 18))):
        cx, cy = rng.uniform(0.03, 0.97, 2)
        radius = float(rng.uniform(0.012, 0.03))
        shade = base + float(rng.choice([-1.0, 1.0])) * float(rng.uniform(30.0, 55.0))
        kind = int(rng.integers(3))
        px, py = (u - cx) / radius, (v - cy) / radius
        if kind == 0:
            d = np.sqrt(px * px + py * py) - 1.0
        elif kind == 1:
            angle = rng.uniform(0.0, math.pi)
            a = px * math.cos(angle) + py * math.sin(angle)
            b = -px * math.sin(angle) + py * math.cos(angle)
            d = np.maximum(np.abs(a) - 2.2, np.abs(b) - 0.35)
        else:
            d = np.abs(np.sqrt(px * px + py * py) - 1.0) - 0.3
        coverage = np.clip(0.5 - d * radius * size, 0.0, 1.0)[..., None]
        image += coverage * (np.clip(shade, 0.0, 255.0) - image)


def render_scene(scene: Scene, size: int) -> np.ndarray:
    """Render ``scene`` at ``size`` x ``size`` pixels.

    Args:
        scene: the clip description.
        size: frame side in pixels.

    Returns:
        uint8 array (num_frames, size, size, 3), RGB.
    """
    frames = np.empty((scene.num_frames, size, size, 3), dtype=np.float32)
    frames[:] = render_background(scene.background, size)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    for index, obj in enumerate(scene.objects):
        track = object_track(scene, index)
        shown = track.alpha > 0.0
        if not shown.any():
            continue
        reach = track.size[shown] * SHAPE_EXTENT
        x0, x1 = _pixel_span(track.x[shown] - reach, track.x[shown] + reach, size)
        y0, y1 = _pixel_span(track.y[shown] - reach, track.y[shown] + reach, size)
        s = track.size.astype(np.float32)[:, None, None]
        px = (centres[None, None, x0:x1] - track.x.astype(np.float32)[:, None, None]) / s
        py = (centres[None, y0:y1, None] - track.y.astype(np.float32)[:, None, None]) / s
        distance = shape_sdf(obj.shape, px, py) * (s * size)
        weight = np.clip(0.5 - distance, 0.0, 1.0) * track.alpha.astype(np.float32)[:, None, None]
        region = frames[:, y0:y1, x0:x1]
        rgb = track.rgb.astype(np.float32)[:, None, None, :]
        region += weight[..., None] * (rgb - region)
    return np.rint(frames).astype(np.uint8)


def _pixel_span(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[int, int]:
    start = max(int(math.floor(float(lo.min()) * size)) - 1, 0)
    stop = min(int(math.ceil(float(hi.max()) * size)) + 1, size)
    return start, stop
