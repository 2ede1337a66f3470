"""Captions, questions, answers and narrations derived from a synthetic scene description.

Every text is a function of a :class:`~leanvl.data.synth.scene.Scene` and a few template
choices; answers are computed from the description by :func:`answer`, never stored per template.
So asking the same :class:`Question` about :func:`~leanvl.data.synth.scene.reverse_scene` gives the
answer for the clip played backwards, which is how the benchmark's temporal property is defined
(and tested): every ``temporal`` question changes to its opposite answer under time reversal
(left↔right, up↔down, bigger↔smaller, appears↔disappears, yes↔no, before↔after, start↔end colour,
first↔second object), while every ``static`` question keeps its answer and can be read from any
single frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leanvl.data.synth.scene import (
    COLORS,
    EVENT_CLASS,
    MOVES,
    SHAPES,
    Deck,
    Event,
    Scene,
    colors_ever,
    stable_objects,
)

DIRECTIONS: dict[str, str] = {kind: kind.removeprefix("move_") for kind in MOVES}
"""Move event kind → direction word."""

AXIS_WORDS: dict[str, tuple[str, str]] = {
    "left": ("left", "right"),
    "right": ("left", "right"),
    "up": ("up", "down"),
    "down": ("up", "down"),
}

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")

ANSWER_VOCAB: tuple[str, ...] = (
    *COLORS,
    *SHAPES,
    "left",
    "right",
    "up",
    "down",
    "one",
    "two",
    "three",
    "yes",
    "no",
    "bigger",
    "smaller",
    "appears",
    "disappears",
    "before",
    "after",
)
"""The closed answer vocabulary of the QA splits (``qa_answers.json``)."""

# ---------------------------------------------------------------------------------------------
# Captions

EVENT_PHRASES: dict[str, tuple[str, ...]] = {
    "move_left": (
        "{s} moves to the left",
        "{s} slides left",
        "{s} travels from right to left",
        "{s} drifts leftward",
        "{s} heads left",
    ),
    "move_right": (
        "{s} moves to the right",
        "{s} slides right",
        "{s} travels from left to right",
        "{s} drifts rightward",
        "{s} heads right",
    ),
    "move_up": (
        "{s} moves up",
        "{s} slides up",
        "{s} travels from bottom to top",
        "{s} drifts upward",
        "{s} rises",
    ),
    "move_down": (
        "{s} moves down",
        "{s} slides down",
        "{s} travels from top to bottom",
        "{s} drifts downward",
        "{s} sinks",
    ),
    "grow": (
        "{s} grows",
        "{s} gets bigger",
        "{s} expands",
        "{s} increases in size",
        "{s} swells",
    ),
    "shrink": (
        "{s} shrinks",
        "{s} gets smaller",
        "{s} contracts",
        "{s} decreases in size",
        "{s} dwindles",
    ),
    "appear": (
        "{s} appears",
        "{s} shows up",
        "{s} fades in",
        "{s} comes into view",
        "{s} enters the scene",
    ),
    "disappear": (
        "{s} disappears",
        "{s} vanishes",
        "{s} fades out",
        "{s} goes out of view",
        "{s} leaves the scene",
    ),
    "recolor": (
        "{s} turns from {a} to {b}",
        "{s} changes color from {a} to {b}",
        "{s} goes from {a} to {b}",
        "{s} switches from {a} to {b}",
        "{s} changes from {a} to {b}",
    ),
}
"""Paraphrases per event kind; phrasing ``i`` of a kind and of its opposite differ only in the
direction word, so a reversed caption is a minimal temporal edit of the original."""

TWO_EVENTS = ("first {e1}, then {e2}", "{e1}, and then {e2}", "{e1}, after that {e2}")
CONTEXTS = ("", " next to {others}", " while {others} {stay} still", " beside {others}")
BACKGROUND_PHRASES = ("", " on a {bg} background", " against a {bg} background")
BACKGROUND_WORDS = {
    "solid": "plain",
    "gradient": "gradient",
    "noise": "textured",
    "clutter": "cluttered",
}


@dataclass(frozen=True)
class CaptionVariant:
    """Template choices of one caption (indices, taken modulo the number of templates).

    Attributes:
        phrase: paraphrase of the event(s) in :data:`EVENT_PHRASES`.
        connector: two-event connector in :data:`TWO_EVENTS`.
        context: mention of the still objects in :data:`CONTEXTS`.
        background: mention of the background in :data:`BACKGROUND_PHRASES`.
    """

    phrase: int = 0
    connector: int = 0
    context: int = 0
    background: int = 0


def object_name(scene: Scene, index: int) -> str:
    """``"red circle"``, or ``"circle"`` when the object changes colour (the colour is no name)."""
    obj = scene.objects[index]
    return obj.shape if scene.events_of(index, "color") else f"{obj.color} {obj.shape}"


def _with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _event_phrase(event: Event, subject: str, phrase: int) -> str:
    template = EVENT_PHRASES[event.kind][phrase % len(EVENT_PHRASES[event.kind])]
    return template.format(s=subject, a=event.start, b=event.end)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def caption(scene: Scene, variant: CaptionVariant) -> str:
    """The caption of ``scene`` with the template choices of ``variant`` (lower case).

    Example: ``"first a red circle moves to the left, then it grows next to a blue square"``.
    """
    events = list(scene.events)
    if not events:
        raise ValueError("a synthetic clip needs at least one event to be captioned")
    first = events[0]
    text = _event_phrase(first, _with_article(object_name(scene, first.obj)), variant.phrase)
    if len(events) > 1:
        second = events[1]
        subject = "it" if second.obj == first.obj else _with_article(object_name(scene, second.obj))
        text2 = _event_phrase(second, subject, variant.phrase)
        connector = TWO_EVENTS[variant.connector % len(TWO_EVENTS)]
        text = connector.format(e1=text, e2=text2)
    acting = {e.obj for e in events}
    still = [
        _with_article(object_name(scene, i)) for i in range(len(scene.objects)) if i not in acting
    ]
    if still:
        context = CONTEXTS[variant.context % len(CONTEXTS)]
        text += context.format(others=_join(still), stay="stays" if len(still) == 1 else "stay")
    bg = BACKGROUND_PHRASES[variant.background % len(BACKGROUND_PHRASES)]
    return text + bg.format(bg=BACKGROUND_WORDS[scene.background.kind])


def caption_variants(rng: np.random.Generator, count: int) -> list[CaptionVariant]:
    """``count`` template choices with distinct event paraphrases (when ``count`` <= 5)."""
    phrases = rng.permutation(len(EVENT_PHRASES["grow"]))
    return [
        CaptionVariant(
            phrase=int(phrases[k % len(phrases)]),
            connector=int(rng.integers(len(TWO_EVENTS))),
            context=int(rng.integers(len(CONTEXTS))),
            background=int(rng.integers(len(BACKGROUND_PHRASES))),
        )
        for k in range(count)
    ]


# ---------------------------------------------------------------------------------------------
# Questions

KIND_TYPE: dict[str, str] = {
    "color": "static",
    "shape": "static",
    "count": "static",
    "exist": "static",
    "direction": "temporal",
    "move_yn": "temporal",
    "size_change": "temporal",
    "size_yn": "temporal",
    "visibility": "temporal",
    "visibility_yn": "temporal",
    "color_end": "temporal",
    "color_start": "temporal",
    "order_same": "temporal",
    "order_objects": "temporal",
}
"""Question kind → ``static`` (any single frame answers it) or ``temporal`` (needs order)."""

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "color": ("what color is the {shape}?", "what is the color of the {shape}?",
              "which color does the {shape} have?"),
    "shape": ("what shape is the {color} object?", "what is the shape of the {color} object?",
              "which shape is {color}?"),
    "count": ("how many objects are there?", "how many shapes are in the video?",
              "how many objects can be seen?"),
    "exist": ("is there a {param}?", "does the video show a {param}?", "can you see a {param}?"),
    "direction": ("which direction does the {obj} move?", "where does the {obj} move to?",
                  "in which direction is the {obj} moving?"),
    "move_yn": ("does the {obj} move {param}?", "is the {obj} moving {param}?",
                "does the {obj} go {param}?"),
    "size_change": ("does the {obj} get bigger or smaller?", "does the {obj} grow or shrink?",
                    "is the {obj} getting bigger or smaller?"),
    "size_yn:grow": ("does the {obj} grow?", "does the {obj} get bigger?",
                     "is the {obj} growing?"),
    "size_yn:shrink": ("does the {obj} shrink?", "does the {obj} get smaller?",
                       "is the {obj} shrinking?"),
    "visibility": ("does the {obj} appear or disappear?",
                   "is the {obj} appearing or disappearing?",
                   "does the {obj} come into view or go out of view?"),
    "visibility_yn:appear": ("does the {obj} appear?", "does the {obj} come into view?",
                             "is the {obj} appearing?"),
    "visibility_yn:disappear": ("does the {obj} disappear?", "does the {obj} go out of view?",
                                "is the {obj} disappearing?"),
    "color_end": ("what color does the {shape} turn?", "what color does the {shape} become?",
                  "what color is the {shape} at the end?"),
    "color_start": ("what color is the {shape} at the beginning?",
                    "what color is the {shape} at first?",
                    "what color does the {shape} start as?"),
    "order_same": ("does the {obj} {va} before or after it {vb}?",
                   "does the {obj} {va} before it {vb} or after?"),
    "order_objects": ("which object changes first, the {a} or the {b}?",
                      "which changes first: the {a} or the {b}?",
                      "what changes first, the {a} or the {b}?"),
}  # fmt: skip

CLASS_VERBS = {"move": "move", "size": "change size", "color": "change color"}


@dataclass(frozen=True)
class Question:
    """A question about a scene, in terms that survive time reversal.

    Attributes:
        kind: a key of :data:`KIND_TYPE`.
        objects: indices of the objects asked about (shapes name them; shapes are unique).
        param: kind-specific detail: ``"red square"`` (exist), a direction word (move_yn),
            ``grow``/``shrink`` (size_yn), ``appear``/``disappear`` (visibility_yn),
            ``"move,size"`` (order_same: does the first class happen before the second?).
        template: paraphrase index.
    """

    kind: str
    objects: tuple[int, ...] = ()
    param: str | None = None
    template: int = 0

    @property
    def type(self) -> str:
        """``static`` or ``temporal``."""
        return KIND_TYPE[self.kind]


def question_text(scene: Scene, q: Question) -> str:
    """The question's wording (identical for a scene and its reversal)."""
    key = f"{q.kind}:{q.param}" if q.kind in ("size_yn", "visibility_yn") else q.kind
    templates = QUESTION_TEMPLATES[key]
    template = templates[q.template % len(templates)]
    fields: dict[str, str] = {"param": q.param or ""}
    if q.objects:
        obj = scene.objects[q.objects[0]]
        fields |= {"shape": obj.shape, "color": obj.color, "obj": object_name(scene, q.objects[0])}
    if q.kind == "order_same":
        a, b = q.param.split(",")
        fields |= {"va": CLASS_VERBS[a], "vb": CLASS_VERBS[b]}
    if q.kind == "order_objects":
        fields |= {"a": scene.objects[q.objects[0]].shape, "b": scene.objects[q.objects[1]].shape}
    return template.format(**fields)


def _only_event(scene: Scene, index: int, event_class: str) -> Event:
    events = scene.events_of(index, event_class)
    if len(events) != 1:
        raise ValueError(
            f"question needs exactly one {event_class} event of object {index}, got {len(events)}"
        )
    return events[0]


def answer(scene: Scene, q: Question) -> str:
    """The answer to ``q`` computed from the scene description (a word of :data:`ANSWER_VOCAB`)."""
    i = q.objects[0] if q.objects else None
    if q.kind == "color":
        return scene.objects[i].color
    if q.kind == "shape":
        return scene.objects[i].shape
    if q.kind == "count":
        return NUMBER_WORDS[sum(o.visible for o in scene.objects)]
    if q.kind == "exist":
        color, shape = q.param.split(" ")
        present = any(
            o.shape == shape and color in colors_ever(scene, k) for k, o in enumerate(scene.objects)
        )
        return "yes" if present else "no"
    if q.kind in ("direction", "move_yn"):
        direction = DIRECTIONS[_only_event(scene, i, "move").kind]
        return direction if q.kind == "direction" else _yes_no(direction == q.param)
    if q.kind in ("size_change", "size_yn"):
        kind = _only_event(scene, i, "size").kind
        if q.kind == "size_yn":
            return _yes_no(kind == q.param)
        return "bigger" if kind == "grow" else "smaller"
    if q.kind in ("visibility", "visibility_yn"):
        kind = _only_event(scene, i, "visibility").kind
        return _yes_no(kind == q.param) if q.kind == "visibility_yn" else kind + "s"
    if q.kind in ("color_end", "color_start"):
        event = _only_event(scene, i, "color")
        return event.end if q.kind == "color_end" else event.start
    if q.kind == "order_same":
        a, b = q.param.split(",")
        first = _only_event(scene, i, a).t0 < _only_event(scene, i, b).t0
        return "before" if first else "after"
    if q.kind == "order_objects":
        j = q.objects[1]
        first_i = min(e.t0 for e in scene.events_of(i))
        first_j = min(e.t0 for e in scene.events_of(j))
        return scene.objects[i if first_i < first_j else j].shape
    raise ValueError(f"unknown question kind {q.kind!r}")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _temporal_candidates(scene: Scene, decks: dict[str, Deck]) -> dict[str, list[Question]]:
    found: dict[str, list[Question]] = {}
    for event in scene.events:
        i, cls = event.obj, EVENT_CLASS[event.kind]
        if cls == "move":
            direction = DIRECTIONS[event.kind]
            asked = decks["yes_no"].draw() == "yes"
            other = [w for w in AXIS_WORDS[direction] if w != direction][0]
            found.setdefault("direction", []).append(Question("direction", (i,)))
            found.setdefault("move_yn", []).append(
                Question("move_yn", (i,), direction if asked else other)
            )
        elif cls == "size":
            param = decks["grow_shrink"].draw()
            found.setdefault("size_change", []).append(Question("size_change", (i,)))
            found.setdefault("size_yn", []).append(Question("size_yn", (i,), param))
        elif cls == "visibility":
            param = decks["appear_disappear"].draw()
            found.setdefault("visibility", []).append(Question("visibility", (i,)))
            found.setdefault("visibility_yn", []).append(Question("visibility_yn", (i,), param))
        else:
            found.setdefault("color_end", []).append(Question("color_end", (i,)))
            found.setdefault("color_start", []).append(Question("color_start", (i,)))
    if len(scene.events) == 2:
        e1, e2 = scene.events
        flip = decks["order"].draw() == "swap"
        if e1.obj == e2.obj:
            a, b = (e2, e1) if flip else (e1, e2)
            found["order_same"] = [
                Question("order_same", (e1.obj,), f"{a.event_class},{b.event_class}")
            ]
        else:
            pair = (e2.obj, e1.obj) if flip else (e1.obj, e2.obj)
            found["order_objects"] = [Question("order_objects", pair)]
    return found


def _static_candidates(scene: Scene, decks: dict[str, Deck]) -> dict[str, list[Question]]:
    stable = stable_objects(scene)
    found: dict[str, list[Question]] = {}
    if stable:
        found["color"] = [Question("color", (i,)) for i in stable]
        found["shape"] = [Question("shape", (i,)) for i in stable]
    if not any(e.event_class == "visibility" for e in scene.events):
        found["count"] = [Question("count")]
    found["exist"] = []  # yes/no is dealt only when the kind is chosen (see _exist_options)
    return found


def _exist_options(scene: Scene, decks: dict[str, Deck]) -> list[Question]:
    stable = stable_objects(scene)
    if decks["exist"].draw(allowed={"yes", "no"} if stable else {"no"}) == "yes":
        return [
            Question("exist", param=f"{scene.objects[i].color} {scene.objects[i].shape}")
            for i in stable
        ]
    return [Question("exist", param=f"{c} {s}") for c, s in _absent_pairs(scene)]


def _absent_pairs(scene: Scene) -> list[tuple[str, str]]:
    """(colour, shape) pairs never shown that share a colour or a shape with the scene."""
    shapes = {o.shape for o in scene.objects}
    colors = set().union(*(colors_ever(scene, i) for i in range(len(scene.objects))))
    present = {(c, o.shape) for i, o in enumerate(scene.objects) for c in colors_ever(scene, i)}
    return [
        (c, s)
        for c in COLORS
        for s in SHAPES
        if (c, s) not in present and (c in colors or s in shapes)
    ]


def question_decks(rng: np.random.Generator) -> dict[str, Deck]:
    """The balancing decks :func:`select_questions` draws from (one set per split)."""
    return {
        "static": Deck(["color", "shape", "count", "exist"], rng),
        "temporal": Deck([k for k, t in KIND_TYPE.items() if t == "temporal"], rng),
        "yes_no": Deck(["yes", "no"], rng),
        "exist": Deck(["yes", "no"], rng),
        "grow_shrink": Deck(["grow", "shrink"], rng),
        "appear_disappear": Deck(["appear", "disappear"], rng),
        "order": Deck(["keep", "swap"], rng),
    }


def select_questions(
    scene: Scene, rng: np.random.Generator, decks: dict[str, Deck], n_static: int, n_temporal: int
) -> list[Question]:
    """Up to ``n_static`` static and ``n_temporal`` temporal questions of distinct kinds.

    Kinds and yes/no parameters are dealt from ``decks`` so answers stay balanced over a split.
    """
    chosen: list[Question] = []
    for kind_type, wanted, candidates in (
        ("static", n_static, _static_candidates(scene, decks)),
        ("temporal", n_temporal, _temporal_candidates(scene, decks)),
    ):
        for _ in range(min(wanted, len(candidates))):
            kind = decks[kind_type].draw(allowed=set(candidates))
            options = candidates.pop(kind)
            if kind == "exist":
                options = _exist_options(scene, decks)
            q = options[int(rng.integers(len(options)))]
            key = f"{kind}:{q.param}" if kind in ("size_yn", "visibility_yn") else kind
            template = int(rng.integers(len(QUESTION_TEMPLATES[key])))
            chosen.append(Question(q.kind, q.objects, q.param, template))
    return chosen


# ---------------------------------------------------------------------------------------------
# First-person narrations (EgoClip flavour)

EGO_VERBS: tuple[str, ...] = ("move", "enlarge", "shrink", "place", "remove", "paint")
"""Verb classes of the narrations (``tag_verb`` ids index this tuple)."""

_EGO_VERB_OF = {
    **{kind: "move" for kind in MOVES},
    "grow": "enlarge",
    "shrink": "shrink",
    "appear": "place",
    "disappear": "remove",
    "recolor": "paint",
}


def narration(event: Event, scene: Scene) -> tuple[str, list[int], list[int]]:
    """EgoClip-style narration of one event: ``("#C C moves the red circle left", [0], [0])``.

    The camera wearer ``C`` causes each event. The object is named by its colour when the event
    starts and its shape; ``tag_noun`` is the shape's index in :data:`SHAPES`.
    """
    shape = scene.objects[event.obj].shape
    color = event.start if event.kind == "recolor" else _color_at(scene, event.obj, event.t0)
    name = f"{color} {shape}"
    verb = _EGO_VERB_OF[event.kind]
    if verb == "move":
        text = f"#C C moves the {name} {DIRECTIONS[event.kind]}"
    elif verb == "paint":
        text = f"#C C paints the {name} {event.end}"
    elif verb == "place":
        text = f"#C C places the {name}"
    else:
        text = f"#C C {verb}s the {name}"
    return text, [EGO_VERBS.index(verb)], [SHAPES.index(shape)]


def _color_at(scene: Scene, index: int, time: float) -> str:
    color = scene.objects[index].color
    for event in scene.events_of(index, "color"):
        if event.t1 <= time:
            color = event.end
    return color
