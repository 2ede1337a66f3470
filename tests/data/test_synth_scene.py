"""Synthetic benchmark, description level: reversal, answers, rendering, balance (no files)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from leanvl.data.synth import dataset
from leanvl.data.synth.render import render_background, render_scene
from leanvl.data.synth.scene import (
    COLORS,
    MOVES,
    Background,
    ClipPlan,
    Deck,
    Event,
    Scene,
    SceneObject,
    ego_decks,
    ego_video_scene,
    reverse_scene,
    sample_background,
    sample_clip_scene,
    scene_from_dict,
)
from leanvl.data.synth.text import (
    ANSWER_VOCAB,
    KIND_TYPE,
    CaptionVariant,
    Question,
    answer,
    caption,
    question_decks,
    question_text,
    select_questions,
)

OPPOSITE_WORD = {
    "left": "right", "right": "left", "up": "down", "down": "up", "bigger": "smaller",
    "smaller": "bigger", "appears": "disappears", "disappears": "appears", "yes": "no",
    "no": "yes", "before": "after", "after": "before",
}  # fmt: skip


def _scenes(count: int, seed: int = 0, frames: int = 16) -> list[dataset._Clip]:
    config = dataset.SynthConfig(train=count, frames=frames, seed=seed, temporal_questions=9)
    return dataset._split_clips(config, "train", count)


@pytest.fixture(scope="module")
def clips():
    return _scenes(400)


def _expected_after_reversal(scene: Scene, q: Question, original: str) -> str:
    """The opposite answer, worked out here from the events (not with text.answer)."""
    if q.kind in ("color_end", "color_start"):
        (event,) = [e for e in scene.events if e.obj == q.objects[0] and e.kind == "recolor"]
        return event.start if q.kind == "color_end" else event.end
    if q.kind == "order_objects":
        shapes = {scene.objects[i].shape for i in q.objects}
        return (shapes - {original}).pop()
    return OPPOSITE_WORD[original]


def test_every_temporal_answer_flips_to_its_opposite_under_reversal(clips):
    kinds = Counter()
    for clip in clips:
        reversed_scene = reverse_scene(clip.scene)
        for q in clip.questions:
            before, after = answer(clip.scene, q), answer(reversed_scene, q)
            assert question_text(reversed_scene, q) == question_text(clip.scene, q)
            if q.type == "temporal":
                assert after != before, (q, clip.scene)
                assert after == _expected_after_reversal(clip.scene, q, before), (q, clip.scene)
            else:
                assert after == before, (q, clip.scene)
            kinds[q.kind] += 1
    # the run covered every question kind
    assert set(kinds) == set(KIND_TYPE)


def test_reversal_is_an_involution_and_mirrors_event_times(clips):
    for clip in clips[:100]:
        scene = clip.scene
        back = reverse_scene(reverse_scene(scene))
        assert back == scene
        rev = reverse_scene(scene)
        last = scene.num_frames - 1
        assert sorted((last - e.t1, last - e.t0) for e in scene.events) == sorted(
            (e.t0, e.t1) for e in rev.events
        )


def test_reversed_caption_differs_only_in_direction_or_order():
    obj = SceneObject("circle", "red", 0.7, 0.5, 0.1)
    still = SceneObject("square", "blue", 0.2, 0.2, 0.1)
    move = Event("move_left", 0, 0.0, 7.5, (0.7, 0.5), (0.3, 0.5))
    grow = Event("grow", 0, 7.5, 15.0, 0.1, 0.16)
    scene = Scene(16, Background("solid", (90, 90, 90), (90, 90, 90)), (obj, still), (move, grow))
    variant = CaptionVariant(phrase=0, connector=0, context=1, background=1)
    assert caption(scene, variant) == (
        "first a red circle moves to the left, then it grows next to a blue square "
        "on a plain background"
    )
    assert caption(reverse_scene(scene), variant) == (
        "first a red circle shrinks, then it moves to the right next to a blue square "
        "on a plain background"
    )
    order = Question("order_same", (0,), "move,size")
    assert answer(scene, order) == "before"
    assert answer(reverse_scene(scene), order) == "after"


def test_render_of_reversed_scene_equals_reversed_frames(clips):
    picked = {}
    for clip in clips:  # one scene per event-kind combination
        picked.setdefault(tuple(e.kind for e in clip.scene.events), clip.scene)
    assert len(picked) > 20
    for scene in picked.values():
        frames = render_scene(scene, 64).astype(np.int16)
        backwards = render_scene(reverse_scene(scene), 64).astype(np.int16)[::-1]
        assert np.abs(frames - backwards).max() <= 1
        assert not np.array_equal(frames[0], frames[-1])  # something visibly happens


def _color_pixels(frame: np.ndarray, color: str, tol: int = 40) -> int:
    rgb = np.asarray(COLORS[color], dtype=np.int16)
    return int((np.abs(frame.astype(np.int16) - rgb).max(-1) <= tol).sum())


def _count_blobs(frame: np.ndarray, background: np.ndarray, min_pixels: int = 15) -> int:
    """Connected regions (8-neighbours) of pixels that differ from the background image."""
    todo = np.abs(frame.astype(np.float32) - background).max(-1) > 30
    blobs = 0
    for start in zip(*np.nonzero(todo), strict=True):
        if not todo[start]:
            continue
        stack, size = [start], 0
        todo[start] = False
        while stack:
            y, x = stack.pop()
            size += 1
            for ny, nx in ((y + a, x + b) for a in (-1, 0, 1) for b in (-1, 0, 1)):
                if 0 <= ny < todo.shape[0] and 0 <= nx < todo.shape[1] and todo[ny, nx]:
                    todo[ny, nx] = False
                    stack.append((ny, nx))
        blobs += size >= min_pixels
    return blobs


def test_static_answers_are_visible_in_every_frame(clips):
    checked = 0
    for clip in clips[:120]:
        frames = render_scene(clip.scene, 64)
        for q in clip.questions:
            if q.kind in ("color", "shape"):
                color = clip.scene.objects[q.objects[0]].color
                # at 64 px the smallest object covers ~60 pixels; require most of it everywhere
                assert min(_color_pixels(f, color) for f in frames) >= 30, (q, clip.scene)
                checked += 1
            elif q.kind == "count":
                expected = ["one", "two", "three"].index(answer(clip.scene, q)) + 1
                background = render_background(clip.scene.background, 64)
                assert [_count_blobs(f, background) for f in frames] == [expected] * len(frames)
                checked += 1
    assert checked > 100


def test_answers_are_balanced_within_each_kind():
    clips = _scenes(600, seed=3)
    answers: dict[str, Counter] = {}
    types = Counter()
    events = Counter()
    for clip in clips:
        events.update(e.kind for e in clip.scene.events)
        for q in select_questions(clip.scene, np.random.default_rng(0), question_decks(
            np.random.default_rng(len(answers))), 2, 2):  # fmt: skip
            types[q.type] += 1
        for q in clip.questions:
            answers.setdefault(q.kind, Counter())[answer(clip.scene, q)] += 1
    bounds = {"color": 0.3, "shape": 0.3, "count": 0.45, "direction": 0.4, "color_end": 0.3,
              "color_start": 0.3, "order_objects": 0.35}  # fmt: skip
    for kind, counter in answers.items():
        share = max(counter.values()) / sum(counter.values())
        assert share <= bounds.get(kind, 0.6), (kind, counter)
        assert set(counter) <= set(ANSWER_VOCAB)
    assert 0.4 <= types["static"] / sum(types.values()) <= 0.6
    expected = sum(events.values()) / 4  # classes move/size/visibility/color equally often
    per_class = Counter()
    for kind, n in events.items():
        per_class[kind if kind not in MOVES else "move"] += n
    assert {"grow", "shrink", "appear", "disappear", "recolor", "move"} == set(per_class)
    assert 0.7 * expected <= per_class["move"] <= 1.3 * expected
    assert 0.7 * expected <= per_class["recolor"] <= 1.3 * expected
    for a, b in (("grow", "shrink"), ("appear", "disappear")):
        assert abs(per_class[a] - per_class[b]) <= 0.2 * (per_class[a] + per_class[b])
    moves = [events[k] for k in MOVES]
    assert max(moves) <= 1.3 * min(moves)


def test_scenes_keep_objects_inside_and_apart(clips):
    for clip in clips[:200]:
        scene = clip.scene
        assert len({o.shape for o in scene.objects}) == len(scene.objects)
        assert len({o.color for o in scene.objects}) == len(scene.objects)
        from leanvl.data.synth.scene import SHAPE_EXTENT, object_track

        tracks = [object_track(scene, i) for i in range(len(scene.objects))]
        for t in tracks:
            reach = t.size * SHAPE_EXTENT
            assert (t.x - reach >= 0).all() and (t.x + reach <= 1).all()
            assert (t.y - reach >= 0).all() and (t.y + reach <= 1).all()
        for i in range(len(tracks)):
            for j in range(i + 1, len(tracks)):
                gap = np.hypot(tracks[i].x - tracks[j].x, tracks[i].y - tracks[j].y)
                reach = (tracks[i].size + tracks[j].size) * SHAPE_EXTENT
                assert (gap > reach).all()


def test_scene_dict_round_trip(clips):
    for clip in clips[:50]:
        assert scene_from_dict(clip.scene.to_dict()) == clip.scene


def test_sample_clip_scene_follows_the_plan():
    rng = np.random.default_rng(1)
    background = sample_background(rng, "gradient")
    plan = ClipPlan(3, ("move_up", "disappear"), same_object=False)
    scene = None
    while scene is None:
        scene = sample_clip_scene(rng, plan, 16, background)
    assert [e.kind for e in scene.events] == ["move_up", "disappear"]
    assert [e.obj for e in scene.events] == [0, 1]
    assert scene.events[0].t1 == scene.events[1].t0 == 7.5
    assert scene.events[0].end[1] < scene.events[0].start[1]  # up = decreasing y


def test_ego_video_events_are_consecutive_and_possible():
    rng = np.random.default_rng(5)
    scene = ego_video_scene(rng, 3, 8, 16, sample_background(rng, "noise"), ego_decks(rng))
    assert [(e.t0, e.t1) for e in scene.events] == [(16.0 * k, 16.0 * k + 15) for k in range(8)]
    visible = [o.visible for o in scene.objects]
    for event in scene.events:  # replay: only visible objects move/resize/recolor
        if event.kind == "appear":
            assert not visible[event.obj]
            visible[event.obj] = True
        else:
            assert visible[event.obj]
            visible[event.obj] = event.kind != "disappear"


def test_deck_deals_balanced_rounds():
    deck = Deck("abc", np.random.default_rng(0))
    draws = [deck.draw() for _ in range(30)]
    assert Counter(draws) == {"a": 10, "b": 10, "c": 10}
    assert deck.draw(allowed={"b"}) == "b"
    with pytest.raises(ValueError, match="no item"):
        deck.draw(allowed={"z"})


def test_unknown_question_kind_is_an_error():
    scene = _scenes(1)[0].scene
    with pytest.raises(ValueError, match="unknown question kind"):
        answer(scene, replace(Question("color", (0,)), kind="nope"))
