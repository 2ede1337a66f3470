"""First-person flavour of the synthetic benchmark: EgoClip narrations and EgoMCQ questions.

Mirrors the data SViTT-Ego (Valdez et al., 2024) trains and evaluates on, in EgoVLP's formats
(Lin et al., NeurIPS 2022): each ego "video" is one scene in which several consecutive clips
each show one event caused by the camera wearer, narrated ``"#C C moves the red circle left"``
with verb and noun class ids (``tag_verb``, ``tag_noun``). ``egoclip.csv`` lists the narrated
clips of the training videos; ``egomcq.json`` asks, for each clip of held-out videos, which of 5
clips matches the narration, with the 4 wrong clips taken from the same video (intra-video,
``types`` 2, as EgoVLP's dataset code numbers it) or from 4 other videos (inter-video, ``types``
1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leanvl.data.synth.scene import (
    BACKGROUNDS,
    Deck,
    Scene,
    ego_decks,
    ego_video_scene,
    sample_background,
)
from leanvl.data.synth.text import narration

EGOCLIP_COLUMNS = (
    "clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
    "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun",
)  # fmt: skip
"""Columns of EgoVLP's ``egoclip.csv``, in its order."""

INTER, INTRA = 1, 2
"""EgoMCQ ``types`` values as EgoVLP's dataset code uses them."""


@dataclass(frozen=True)
class EgoVideo:
    """One ego video: a scene with one event per narrated clip.

    Attributes:
        video_uid: file id (``videos_ego/<video_uid>/0.mp4``).
        scene: the scene; event ``k`` spans clip ``k``.
        held_out: True for EgoMCQ's videos (not in ``egoclip.csv``).
    """

    video_uid: str
    scene: Scene
    held_out: bool


def sample_ego_videos(
    seed: int, train_videos: int, mcq_videos: int, clips_per_video: int, clip_frames: int
) -> list[EgoVideo]:
    """``train_videos`` EgoClip videos followed by ``mcq_videos`` held-out EgoMCQ videos."""
    rng = np.random.default_rng([seed, 4])
    decks = ego_decks(rng)
    backgrounds = Deck(list(BACKGROUNDS), rng)
    objects = Deck([2, 3], rng)
    videos = []
    for k in range(train_videos + mcq_videos):
        background = sample_background(rng, backgrounds.draw())
        scene = ego_video_scene(
            rng, objects.draw(), clips_per_video, clip_frames, background, decks
        )
        videos.append(EgoVideo(f"ego_{k:04d}", scene, k >= train_videos))
    return videos


def egoclip_rows(videos: list[EgoVideo], clip_frames: int, fps: float) -> list[dict[str, Any]]:
    """One EgoClip row per narrated clip of every video (``held_out`` marks EgoMCQ's videos).

    Clip ``k`` of a video spans ``[k, k + 1) * clip_frames / fps`` seconds.
    """
    rows = []
    clip_seconds = clip_frames / fps
    for video in videos:
        duration = round(len(video.scene.events) * clip_seconds, 6)
        for k, event in enumerate(video.scene.events):
            text, verbs, nouns = narration(event, video.scene)
            start, end = round(k * clip_seconds, 6), round((k + 1) * clip_seconds, 6)
            rows.append(
                {
                    "clip_idx": len(rows),
                    "video_uid": video.video_uid,
                    "video_dur": duration,
                    "narration_source": "narration_pass_1",
                    "narration_ind": k,
                    "narration_time": round((start + end) / 2, 6),
                    "clip_start": start,
                    "clip_end": end,
                    "clip_text": text,
                    "tag_verb": str(verbs),
                    "tag_noun": str(nouns),
                    "held_out": video.held_out,
                }
            )
    return rows


def egoclip_csv(rows: list[dict[str, Any]]) -> str:
    """``egoclip.csv`` text (tab-separated, header) of the rows of the training videos."""
    lines = ["\t".join(EGOCLIP_COLUMNS)]
    lines += [
        "\t".join(str(row[c]) for c in EGOCLIP_COLUMNS) for row in rows if not row["held_out"]
    ]
    return "\n".join(lines) + "\n"


def egomcq(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """EgoMCQ questions over the held-out videos, keyed ``"0"``, ``"1"``, ...

    Each held-out clip is the query of one intra-video question (4 other clips of its video)
    and one inter-video question (one clip from each of 4 other videos). The 5 choices always
    carry 5 different narrations, so exactly one matches the query; the right position is dealt
    evenly over 0..4.
    """
    rng = np.random.default_rng([seed, 4, 99])
    positions = Deck(range(5), rng)
    held = [r for r in rows if r["held_out"]]
    by_video: dict[str, list[dict[str, Any]]] = {}
    for row in held:
        by_video.setdefault(row["video_uid"], []).append(row)
    questions: dict[str, Any] = {}
    for query in held:
        uid, text = query["video_uid"], query["clip_text"]
        same_video = by_video[uid]
        if len({r["clip_text"] for r in same_video} - {text}) >= 4:
            questions[str(len(questions))] = _question(query, _pick(same_video, rng, {text}, 4),
                                                       INTRA, positions)  # fmt: skip
        others = [u for u in by_video if u != uid]
        seen, wrong = {text}, []
        for u in (others[i] for i in rng.permutation(len(others))):
            candidates = [r for r in by_video[u] if r["clip_text"] not in seen]
            if candidates:
                pick = candidates[int(rng.integers(len(candidates)))]
                wrong.append(pick)
                seen.add(pick["clip_text"])
            if len(wrong) == 4:
                questions[str(len(questions))] = _question(query, wrong, INTER, positions)
                break
    return questions


def _question(query, wrong, types: int, positions: Deck) -> dict[str, Any]:
    position = positions.draw()
    choices = [_clip_fields(r) for r in wrong]
    choices.insert(position, _clip_fields(query))
    return {
        "answer": position,
        "query": _clip_fields(query),
        "choices": {str(i): c for i, c in enumerate(choices)},
        "types": types,
    }


def _pick(pool, rng: np.random.Generator, exclude: set[str], count: int) -> list[dict[str, Any]]:
    """``count`` rows of ``pool`` with distinct narrations outside ``exclude``."""
    chosen, seen = [], set(exclude)
    for i in rng.permutation(len(pool)):
        if pool[i]["clip_text"] not in seen:
            chosen.append(pool[i])
            seen.add(pool[i]["clip_text"])
        if len(chosen) == count:
            break
    return chosen


def _clip_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {c: row[c] for c in EGOCLIP_COLUMNS}
