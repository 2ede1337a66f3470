"""Scene descriptions of the synthetic temporal benchmark: objects, background, events, time.

A :class:`Scene` is the single source of truth of a synthetic clip: the frames
(:mod:`leanvl.data.synth.render`) and every caption, question and answer
(:mod:`leanvl.data.synth.text`) are derived from it. Time reversal is an operation on the
description (:func:`reverse_scene`): the reversed scene starts in the original's final state and
plays the opposite events in the opposite order (left↔right, up↔down, grow↔shrink,
appear↔disappear, colour a→b ↔ b→a), so rendering it gives the original frames in reverse order.

The benchmark exists to make the finding of SViTT (Li et al., CVPR 2023) measurable: frame
shuffling barely changes most video-text models' outputs, and All-in-one's temporal token rolling
(Wang et al., CVPR 2023) was designed against that. Static facts (colour, shape, count) can be read
from any frame; temporal facts (direction, size change, appearance, colour change, order) cannot be
read from an unordered set of frames.

Coordinates are fractions of the (square) frame side, x to the right and y downwards; time is in
frames, ``0 .. num_frames - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "orange": (250, 140, 15),
    "yellow": (245, 225, 30),
    "green": (30, 175, 55),
    "blue": (35, 85, 240),
    "purple": (145, 55, 205),
    "pink": (255, 115, 205),
}
"""Object colours: saturated, far apart in hue, so they survive H.264 chroma subsampling."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
"""Object shapes (also the EgoClip noun classes, in this order)."""

SHAPE_EXTENT = 1.3
"""Largest distance from an object's centre to its outline, in units of its ``size``."""

BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "noise", "clutter")

MOVES: dict[str, tuple[float, float]] = {
    "move_left": (-1.0, 0.0),
    "move_right": (1.0, 0.0),
    "move_up": (0.0, -1.0),
    "move_down": (0.0, 1.0),
}
"""Move event kinds and their unit direction (y grows downwards)."""

OPPOSITE: dict[str, str] = {
    "move_left": "move_right",
    "move_right": "move_left",
    "move_up": "move_down",
    "move_down": "move_up",
    "grow": "shrink",
    "shrink": "grow",
    "appear": "disappear",
    "disappear": "appear",
    "recolor": "recolor",
}
"""The event kind that time reversal turns each kind into."""

EVENT_CLASS: dict[str, str] = {
    **{kind: "move" for kind in MOVES},
    "grow": "size",
    "shrink": "size",
    "appear": "visibility",
    "disappear": "visibility",
    "recolor": "color",
}
"""Reversal-invariant class of each event kind (what changes, not which way)."""

CLASS_KINDS: dict[str, tuple[str, ...]] = {
    "move": tuple(MOVES),
    "size": ("grow", "shrink"),
    "visibility": ("appear", "disappear"),
    "color": ("recolor",),
}

ATTRIBUTE: dict[str, str] = {
    **{kind: "position" for kind in MOVES},
    "grow": "size",
    "shrink": "size",
    "appear": "alpha",
    "disappear": "alpha",
    "recolor": "color",
}
"""The object attribute each event kind changes."""

# Geometry of the generator (fractions of the frame side).
MARGIN = 0.02
GAP = 0.04  # free space kept between the outlines of two objects
SIZE_RANGE = (0.09, 0.12)  # object size (a circle's radius) without a size event
SIZE_FACTOR = 1.6  # grow multiplies the size by this, shrink divides by it
MOVE_RANGE = (0.34, 0.46)  # distance travelled by a move event
TRANSITION = (0.4, 0.6)  # appear/disappear fade in this part of their event


@dataclass(frozen=True)
class SceneObject:
    """One object in its initial state.

    Attributes:
        shape: one of :data:`SHAPES` (unique within a scene, so it names the object).
        color: colour name in :data:`COLORS` at the first frame.
        x: centre, fraction of the frame width from the left.
        y: centre, fraction of the frame height from the top.
        size: radius of the object's circle (other shapes are scaled to a similar area).
        visible: whether the object is shown at the first frame.
    """

    shape: str
    color: str
    x: float
    y: float
    size: float
    visible: bool = True


@dataclass(frozen=True)
class Event:
    """One change of one object attribute over a time interval.

    Attributes:
        kind: ``move_left|move_right|move_up|move_down|grow|shrink|appear|disappear|recolor``.
        obj: index of the object in :attr:`Scene.objects`.
        t0: first frame of the event (may be fractional).
        t1: last frame of the event (``t1 > t0``).
        start: attribute value when the event begins: ``(x, y)`` for moves, the size for
            grow/shrink, 0.0/1.0 opacity for appear/disappear, a colour name for recolor.
        end: attribute value when the event ends (same kind of value as ``start``).
    """

    kind: str
    obj: int
    t0: float
    t1: float
    start: Any
    end: Any

    @property
    def event_class(self) -> str:
        """``move``, ``size``, ``visibility`` or ``color`` (invariant under time reversal)."""
        return EVENT_CLASS[self.kind]


@dataclass(frozen=True)
class Background:
    """A static background.

    Attributes:
        kind: ``solid``, ``gradient``, ``noise`` (smooth texture) or ``clutter`` (small grey
            distractor marks).
        color: base RGB colour (muted, low saturation).
        color2: second RGB colour of a gradient (equal to ``color`` otherwise).
        angle: gradient direction in radians.
        seed: seed of the noise texture / clutter layout.
    """

    kind: str
    color: tuple[int, int, int]
    color2: tuple[int, int, int]
    angle: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Scene:
    """A full clip description; frames and text are functions of it.

    Attributes:
        num_frames: number of frames.
        background: the static background.
        objects: objects in their initial state (shapes unique).
        events: events sorted by start time; events changing the same attribute of the same
            object never overlap in time.
    """

    num_frames: int
    background: Background
    objects: tuple[SceneObject, ...]
    events: tuple[Event, ...] = field(default_factory=tuple)

    def events_of(self, obj: int, event_class: str | None = None) -> list[Event]:
        """Events on object ``obj`` (optionally only those of one class), in time order."""
        return [
            e
            for e in self.events
            if e.obj == obj and (event_class is None or e.event_class == event_class)
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); :func:`scene_from_dict` inverts it."""
        return {
            "num_frames": self.num_frames,
            "background": vars(self.background)
            | {"color": list(self.background.color)}
            | {"color2": list(self.background.color2)},
            "objects": [vars(o).copy() for o in self.objects],
            "events": [
                vars(e) | {"start": _jsonable(e.start), "end": _jsonable(e.end)}
                for e in self.events
            ],
        }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _tupled(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def scene_from_dict(data: dict[str, Any]) -> Scene:
    """Rebuild a :class:`Scene` from :meth:`Scene.to_dict` output (e.g. ``scenes.jsonl``)."""
    bg = data["background"]
    return Scene(
        num_frames=int(data["num_frames"]),
        background=Background(
            bg["kind"], tuple(bg["color"]), tuple(bg["color2"]), bg["angle"], bg["seed"]
        ),
        objects=tuple(SceneObject(**o) for o in data["objects"]),
        events=tuple(
            Event(**(e | {"start": _tupled(e["start"]), "end": _tupled(e["end"])}))
            for e in data["events"]
        ),
    )


# ---------------------------------------------------------------------------------------------
# State over time and reversal


def initial_value(obj: SceneObject, attribute: str) -> Any:
    """Value of ``attribute`` (position/size/alpha/color) of ``obj`` at the first frame."""
    if attribute == "position":
        return (obj.x, obj.y)
    if attribute == "size":
        return obj.size
    if attribute == "alpha":
        return 1.0 if obj.visible else 0.0
    return obj.color


def final_object(scene: Scene, index: int) -> SceneObject:
    """Object ``index`` in its state at the last frame (exact values, no interpolation)."""
    obj = scene.objects[index]
    values = {a: initial_value(obj, a) for a in ("position", "size", "alpha", "color")}
    for event in scene.events_of(index):
        values[ATTRIBUTE[event.kind]] = event.end
    x, y = values["position"]
    return SceneObject(obj.shape, values["color"], x, y, values["size"], values["alpha"] > 0.5)


def reverse_scene(scene: Scene) -> Scene:
    """The time-reversed scene: renders to the original frames in reverse order.

    Objects start in their final state, each event becomes its opposite (:data:`OPPOSITE`) with
    ``start``/``end`` swapped and its interval mirrored (``t -> num_frames - 1 - t``).
    """
    last = scene.num_frames - 1
    events = [
        Event(OPPOSITE[e.kind], e.obj, last - e.t1, last - e.t0, e.end, e.start)
        for e in scene.events
    ]
    events.sort(key=lambda e: (e.t0, e.obj))
    objects = tuple(final_object(scene, i) for i in range(len(scene.objects)))
    return replace(scene, objects=objects, events=tuple(events))


def event_progress(event: Event, times: np.ndarray) -> np.ndarray:
    """Fraction of ``event`` done at ``times`` (0 before, 1 after).

    Moves and size changes run at constant speed over the whole interval, so any three frames in
    order show the direction; an appearance fades within :data:`TRANSITION` of the interval and a
    colour switches at its middle. All curves satisfy ``g(1 - p) = 1 - g(p)``, which makes
    reversal exact.
    """
    p = np.clip((times - event.t0) / (event.t1 - event.t0), 0.0, 1.0)
    if event.event_class == "visibility":
        lo, hi = TRANSITION
        return np.clip((p - lo) / (hi - lo), 0.0, 1.0)
    if event.event_class == "color":
        # a switch at the middle: a colour blend (yellow->blue passes through grey) would show
        # a colour that is neither; only a frame exactly at the middle is a 50/50 blend
        return np.clip((p - 0.5) * 1e6 + 0.5, 0.0, 1.0)
    return p


@dataclass(frozen=True)
class ObjectTrack:
    """An object's state at every frame (arrays of length ``num_frames``).

    Attributes:
        x: centre x per frame.
        y: centre y per frame.
        size: size per frame.
        rgb: (num_frames, 3) float colour per frame.
        alpha: opacity per frame in [0, 1].
    """

    x: np.ndarray
    y: np.ndarray
    size: np.ndarray
    rgb: np.ndarray
    alpha: np.ndarray


def object_track(scene: Scene, index: int) -> ObjectTrack:
    """State of object ``index`` at each frame, interpolated from its events."""
    obj = scene.objects[index]
    times = np.arange(scene.num_frames, dtype=np.float64)
    n = scene.num_frames
    x, y = np.full(n, obj.x), np.full(n, obj.y)
    size = np.full(n, obj.size)
    alpha = np.full(n, 1.0 if obj.visible else 0.0)
    rgb = np.tile(np.asarray(COLORS[obj.color], dtype=np.float64), (n, 1))
    for event in scene.events_of(index):
        g = event_progress(event, times)
        active = times >= event.t0
        attribute = ATTRIBUTE[event.kind]
        if attribute == "position":
            (x0, y0), (x1, y1) = event.start, event.end
            x = np.where(active, x0 + (x1 - x0) * g, x)
            y = np.where(active, y0 + (y1 - y0) * g, y)
        elif attribute == "size":
            size = np.where(active, event.start + (event.end - event.start) * g, size)
        elif attribute == "alpha":
            alpha = np.where(active, event.start + (event.end - event.start) * g, alpha)
        else:
            c0 = np.asarray(COLORS[event.start], dtype=np.float64)
            c1 = np.asarray(COLORS[event.end], dtype=np.float64)
            rgb = np.where(active[:, None], c0 + (c1 - c0) * g[:, None], rgb)
    return ObjectTrack(x, y, size, rgb, alpha)


def stable_objects(scene: Scene) -> list[int]:
    """Objects visible in every frame with one colour throughout (static questions ask these)."""
    return [
        i
        for i, obj in enumerate(scene.objects)
        if obj.visible and not scene.events_of(i, "visibility") and not scene.events_of(i, "color")
    ]


def colors_ever(scene: Scene, index: int) -> set[str]:
    """Every colour object ``index`` shows at some frame."""
    colors = {scene.objects[index].color}
    colors.update(e.end for e in scene.events_of(index, "color"))
    return colors


# ---------------------------------------------------------------------------------------------
# Random scene generation


class Deck:
    """Draws items in shuffled rounds, so every item comes up equally often (balanced answers).

    A draw restricted to ``allowed`` items takes the first allowed pending item, dealing a new
    round when none is pending; the skipped items stay pending for later draws, so restricted
    draws do not skew the long-run counts (as long as restrictions leave room for the rest).

    Args:
        items: the items to deal.
        rng: numpy generator used to shuffle each round.
    """

    MAX_PENDING_ROUNDS = 8

    def __init__(self, items, rng: np.random.Generator):
        self.items, self.rng, self.pending = list(items), rng, []

    def _deal(self) -> None:
        self.pending += [self.items[i] for i in self.rng.permutation(len(self.items))]

    def put_back(self, item) -> None:
        """Return a drawn ``item`` that could not be used; it is dealt again first."""
        self.pending.insert(0, item)

    def draw(self, allowed=None):
        """Next item; with ``allowed``, the first pending item in it (the round keeps the rest)."""
        if allowed is not None and not any(item in allowed for item in self.items):
            raise ValueError(f"no item of {self.items} is allowed (allowed={sorted(allowed)})")
        while True:
            for position, item in enumerate(self.pending):
                if allowed is None or item in allowed:
                    return self.pending.pop(position)
            if len(self.pending) >= self.MAX_PENDING_ROUNDS * len(self.items):
                self.pending = []  # restrictions keep skipping the same items: start afresh
            self._deal()


def _muted_rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    hue, sat, val = rng.random(), rng.uniform(0.0, 0.22), rng.uniform(0.32, 0.78)
    rgb = _hsv_to_rgb(hue, sat, val)
    return tuple(int(round(c * 255)) for c in rgb)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def sample_background(rng: np.random.Generator, kind: str) -> Background:
    """A random background of ``kind`` (muted colours, so objects stand out)."""
    if kind not in BACKGROUNDS:
        raise ValueError(f"background kind must be one of {BACKGROUNDS}, got {kind!r}")
    color = _muted_rgb(rng)
    color2 = _muted_rgb(rng) if kind == "gradient" else color
    angle = float(rng.uniform(0.0, 2.0 * math.pi)) if kind == "gradient" else 0.0
    return Background(kind, color, color2, angle, int(rng.integers(2**31)))


@dataclass
class _Body:
    """Mutable geometry of one object while a scene is being generated."""

    shape: str
    color: str
    x: float
    y: float
    size: float
    visible: bool = True
    path: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, extent)

    def __post_init__(self):
        self.path.append((self.x, self.y, self.size * SHAPE_EXTENT))


def _segment_points(a: tuple[float, float, float], b: tuple[float, float, float], n: int = 9):
    return [
        (a[0] + (b[0] - a[0]) * k / (n - 1), a[1] + (b[1] - a[1]) * k / (n - 1)) for k in range(n)
    ]


def _paths_clear(p: list[tuple[float, float, float]], q: list[tuple[float, float, float]]) -> bool:
    """True if two swept paths (polylines with extents) stay ``GAP`` apart at every point."""
    reach = max(e for *_, e in p) + max(e for *_, e in q) + GAP
    a = np.asarray(
        [pt for s, t in zip(p, p[1:] or p, strict=False) for pt in _segment_points(s, t)]
    )
    b = np.asarray(
        [pt for s, t in zip(q, q[1:] or q, strict=False) for pt in _segment_points(s, t)]
    )
    distances = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    return float(distances.min()) > reach


def _room(coord: float, sign: float, extent: float) -> float:
    """How far an object at ``coord`` can move in direction ``sign`` and stay in the frame."""
    return coord - (extent + MARGIN) if sign < 0 else (1.0 - extent - MARGIN) - coord


def _inside(x: float, y: float, extent: float) -> bool:
    lo, hi = extent + MARGIN, 1.0 - extent - MARGIN
    return lo <= x <= hi and lo <= y <= hi


class _Builder:
    """Builds a scene event by event, keeping every object inside the frame and apart."""

    def __init__(self, rng: np.random.Generator, num_frames: int):
        self.rng, self.num_frames = rng, num_frames
        self.bodies: list[_Body] = []
        self.initial: list[SceneObject] = []
        self.events: list[Event] = []

    def add_object(
        self, shape: str, color: str, size: float, visible: bool, kinds=(), tries: int = 60
    ) -> bool:
        """Place a new object where it clears every other object's path; False if none found.

        ``kinds`` are the events planned for it: the object is placed where it has room for
        them (a move left starts far enough right, a growing object far enough from the edges).
        """
        extent = size * SHAPE_EXTENT * (SIZE_FACTOR if "grow" in kinds else 1.0)
        lo, hi = extent + MARGIN, 1.0 - extent - MARGIN
        ranges = {"x": [lo, hi], "y": [lo, hi]}
        for kind in kinds:
            if kind in MOVES:
                dx, dy = MOVES[kind]
                axis, sign = ("x", dx) if dx else ("y", dy)
                ranges[axis][0 if sign < 0 else 1] += -sign * MOVE_RANGE[0]
        if ranges["x"][0] > ranges["x"][1] or ranges["y"][0] > ranges["y"][1]:
            return False
        for _ in range(tries):
            x = float(self.rng.uniform(*ranges["x"]))
            y = float(self.rng.uniform(*ranges["y"]))
            body = _Body(shape, color, x, y, size, visible)
            if all(_paths_clear(body.path, other.path) for other in self.bodies):
                self.bodies.append(body)
                self.initial.append(SceneObject(shape, color, x, y, size, visible))
                return True
        return False

    def try_event(self, index: int, kind: str, t0: float, t1: float, color: str | None = None):
        """Append event ``kind`` on object ``index`` if it is possible; returns success."""
        body = self.bodies[index]
        attribute = ATTRIBUTE[kind]
        if attribute == "position":
            if not body.visible:
                return False
            dx, dy = MOVES[kind]
            extent = body.size * SHAPE_EXTENT
            room = _room(body.x if dx else body.y, dx or dy, extent)
            if room < MOVE_RANGE[0]:
                return False
            distance = float(self.rng.uniform(MOVE_RANGE[0], min(MOVE_RANGE[1], room)))
            x1, y1 = body.x + dx * distance, body.y + dy * distance
            trial = [*body.path, (x1, y1, extent)]
            if not self._clear(index, trial):
                return False
            self._commit(index, kind, t0, t1, (body.x, body.y), (x1, y1), trial)
            body.x, body.y = x1, y1
            return True
        if attribute == "size":
            if not body.visible:
                return False
            new = body.size * SIZE_FACTOR if kind == "grow" else body.size / SIZE_FACTOR
            lo, hi = SIZE_RANGE[0] / SIZE_FACTOR, SIZE_RANGE[1] * SIZE_FACTOR
            if not lo * 0.999 <= new <= hi * 1.001:
                return False
            trial = [*body.path, (body.x, body.y, new * SHAPE_EXTENT)]
            if not _inside(body.x, body.y, new * SHAPE_EXTENT) or not self._clear(index, trial):
                return False
            self._commit(index, kind, t0, t1, body.size, new, trial)
            body.size = new
            return True
        if attribute == "alpha":
            if body.visible != (kind == "disappear"):
                return False
            start, end = (1.0, 0.0) if kind == "disappear" else (0.0, 1.0)
            self._commit(index, kind, t0, t1, start, end, body.path)
            body.visible = kind == "appear"
            return True
        if not body.visible or color is None or color == body.color:
            return False
        self._commit(index, kind, t0, t1, body.color, color, body.path)
        body.color = color
        return True

    def _clear(self, index: int, path) -> bool:
        return all(_paths_clear(path, b.path) for j, b in enumerate(self.bodies) if j != index)

    def _commit(self, index, kind, t0, t1, start, end, path):
        self.events.append(Event(kind, index, float(t0), float(t1), start, end))
        self.bodies[index].path = list(path)

    def scene(self, background: Background) -> Scene:
        """The finished :class:`Scene`."""
        events = tuple(sorted(self.events, key=lambda e: (e.t0, e.obj)))
        return Scene(self.num_frames, background, tuple(self.initial), events)


def _size_for(kind: str, rng: np.random.Generator) -> float:
    """Initial size, drawn so that sizes look alike whichever way time runs.

    Grow starts from the small range and shrink from the large one, so a single frame says
    nothing about the direction of a size change.
    """
    size = float(rng.uniform(*SIZE_RANGE))
    return size * SIZE_FACTOR if kind == "shrink" else size


@dataclass(frozen=True)
class ClipPlan:
    """What a clip shows, before geometry: the generator's balanced choices.

    Attributes:
        num_objects: 1–3 objects.
        kinds: one or two event kinds, in time order.
        same_object: with two events, whether one object does both.
    """

    num_objects: int
    kinds: tuple[str, ...]
    same_object: bool = True


def sample_clip_scene(
    rng: np.random.Generator, plan: ClipPlan, num_frames: int, background: Background
) -> Scene | None:
    """Generate a clip scene that follows ``plan``; ``None`` if the geometry did not fit.

    One event spans the whole clip; two events split it in halves ("first ..., then ...").
    Colours and shapes are distinct within a scene (including colours an object turns into),
    so "the red object" and "the circle" each name one object.
    """
    last = float(num_frames - 1)
    windows = [(0.0, last)] if len(plan.kinds) == 1 else [(0.0, last / 2), (last / 2, last)]
    actors = [0, 0] if plan.same_object else [0, 1]
    num_objects = max(plan.num_objects, max(actors[: len(plan.kinds)]) + 1)
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:num_objects]]
    palette = [list(COLORS)[i] for i in rng.permutation(len(COLORS))]
    colors, spare = palette[:num_objects], palette[num_objects:]
    builder = _Builder(rng, num_frames)
    num_actors = max(actors[: len(plan.kinds)]) + 1
    for i in range(num_actors):
        acting = [k for k, a in zip(plan.kinds, actors, strict=False) if a == i]
        sized = [k for k in acting if k in ("grow", "shrink")]
        size = _size_for(sized[0], rng) if sized else float(rng.uniform(*SIZE_RANGE))
        visible = acting[0] != "appear"
        if not builder.add_object(shapes[i], colors[i], size, visible, kinds=acting):
            return None
    for kind, actor, (t0, t1) in zip(plan.kinds, actors, windows, strict=False):
        target = spare.pop() if kind == "recolor" else None
        if not builder.try_event(actor, kind, t0, t1, color=target):
            return None
    for i in range(num_actors, num_objects):
        if not builder.add_object(shapes[i], colors[i], float(rng.uniform(*SIZE_RANGE)), True):
            return None
    return builder.scene(background)


def ego_video_scene(
    rng: np.random.Generator,
    num_objects: int,
    num_clips: int,
    clip_frames: int,
    background: Background,
    decks: dict[str, Deck],
) -> Scene:
    """A long first-person "video": one scene in which ``num_clips`` consecutive events happen.

    Event ``k`` spans frames ``[k * clip_frames, (k + 1) * clip_frames - 1]``; state carries over
    from one clip to the next. The event class comes from ``decks["class"]`` and the kind from
    ``decks[<class>]`` (see :func:`ego_decks`); a choice that is impossible in the current state
    (a second grow with no room, an appearance with every object visible) goes back to its deck,
    so verbs stay balanced over a run.
    """
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:num_objects]]
    palette = [list(COLORS)[i] for i in rng.permutation(len(COLORS))]
    builder = _Builder(rng, num_clips * clip_frames)
    for i in range(num_objects):
        if not builder.add_object(shapes[i], palette[i], float(rng.uniform(*SIZE_RANGE)), True):
            break
    for k in range(num_clips):
        t0, t1 = float(k * clip_frames), float((k + 1) * clip_frames - 1)
        if not _ego_event(builder, rng, decks, t0, t1):
            raise RuntimeError(f"no possible event for clip {k} of an ego video")
    return builder.scene(background)


def ego_decks(rng: np.random.Generator) -> dict[str, Deck]:
    """Balancing decks of :func:`ego_video_scene`: event classes, and kinds within each class."""
    return {"class": Deck(list(CLASS_KINDS), rng)} | {
        c: Deck(list(kinds), rng) for c, kinds in CLASS_KINDS.items()
    }


def _ego_event(builder: _Builder, rng, decks: dict[str, Deck], t0: float, t1: float) -> bool:
    used = {b.color for b in builder.bodies}
    free = [c for c in COLORS if c not in used]
    classes = set(CLASS_KINDS)
    while classes:
        event_class = decks["class"].draw(allowed=classes)
        kinds = set(CLASS_KINDS[event_class])
        while kinds:
            kind = decks[event_class].draw(allowed=kinds)
            for index in rng.permutation(len(builder.bodies)):
                color = free[int(rng.integers(len(free)))] if free else None
                if kind == "disappear" and sum(b.visible for b in builder.bodies) < 2:
                    break  # keep something in view
                if builder.try_event(int(index), kind, t0, t1, color=color):
                    return True
            decks[event_class].put_back(kind)
            kinds.discard(kind)
        decks["class"].put_back(event_class)
        classes.discard(event_class)
    return False
