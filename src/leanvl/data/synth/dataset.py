"""Generate the built-in synthetic temporal benchmark: mp4 clips plus standard annotation files.

``generate(out_dir, SynthConfig(...))`` writes::

    OUT/videos/<clip_id>.mp4                 clips (H.264, yuv420p)
    OUT/videos_ego/<video_uid>/0.mp4         ego "videos" (with SynthConfig.ego)
    OUT/annotations/ret_{train,val,test}.json    Singularity/SViTT retrieval lists
    OUT/annotations/qa_{train,val,test}.json     QA lists with "type": static|temporal
    OUT/annotations/qa_answers.json          the closed answer vocabulary (a list)
    OUT/annotations/mc_test.jsonl            All-in-one MSR-VTT-MC lines (5 options)
    OUT/annotations/egoclip.csv, egomcq.json EgoVLP formats (with SynthConfig.ego)
    OUT/annotations/scenes.jsonl             the scene description and question specs per clip
    OUT/meta.json, OUT/README.md             parameters, counts, chance levels; dataset card

so the readers of :mod:`leanvl.data.annotations` serve synthetic and real data alike. All text
is derived from the scene descriptions (:mod:`leanvl.data.synth.text`); the same config gives
byte-identical annotations and identical decoded frames. The dataset is built in a temporary
sibling folder and renamed into place, so an interrupted run leaves no partial ``OUT``.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from leanvl.data.synth.card import build_meta, dataset_card
from leanvl.data.synth.ego import egoclip_csv, egoclip_rows, egomcq, sample_ego_videos
from leanvl.data.synth.scene import (
    BACKGROUNDS,
    CLASS_KINDS,
    ClipPlan,
    Deck,
    Scene,
    reverse_scene,
    sample_background,
    sample_clip_scene,
)
from leanvl.data.synth.text import (
    ANSWER_VOCAB,
    CaptionVariant,
    Question,
    answer,
    caption,
    caption_variants,
    question_decks,
    question_text,
    select_questions,
)

GENERATOR_VERSION = "1.0"
"""Bumped whenever the same config would produce different data."""

SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}  # seeds rng streams; ego.py uses 4
_RUNTIME_FIELDS = ("workers", "preview")  # do not change the data, so not part of meta.json


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the synthetic benchmark (everything but ``workers``/``preview`` shapes data).

    Attributes:
        train: number of training clips.
        val: number of validation clips.
        test: number of test clips.
        frames: frames per clip.
        size: frame side in pixels (even).
        fps: frame rate stored in the mp4 files.
        seed: random seed; the same config gives the same dataset.
        crf: x264 constant rate factor of the clips.
        captions_per_clip: paraphrased captions per training clip (val/test clips get one).
        static_questions: static questions per clip (at most).
        temporal_questions: temporal questions per clip (at most).
        two_event_fraction: fraction of clips with two events in order ("first ..., then ...").
        reversed_pairs: fraction of val/test clips that come as (clip, time-reversed clip) pairs,
            which only a model that sees frame order can tell apart in retrieval.
        ego: also write the first-person flavour (EgoClip csv + EgoMCQ json).
        ego_videos: ego "videos" whose narrations form ``egoclip.csv``.
        ego_mcq_videos: further ego videos (held out of egoclip.csv) that EgoMCQ draws from.
        ego_clips_per_video: consecutive narrated clips per ego video (>= 5 for intra-video MCQ).
        workers: processes rendering/encoding clips (0: one per CPU core).
        preview: clips shown in ``preview.png`` (0: no preview).
    """

    train: int = 2000
    val: int = 200
    test: int = 200
    frames: int = 16
    size: int = 112
    fps: float = 8.0
    seed: int = 0
    crf: int = 20
    captions_per_clip: int = 4
    static_questions: int = 2
    temporal_questions: int = 2
    two_event_fraction: float = 0.3
    reversed_pairs: float = 0.5
    ego: bool = False
    ego_videos: int = 40
    ego_mcq_videos: int = 10
    ego_clips_per_video: int = 8
    workers: int = 0
    preview: int = 0

    def __post_init__(self):
        checks = {
            "train": self.train >= 0,
            "val": self.val >= 0,
            "test": self.test >= 0 and (self.test == 0 or self.test >= 5),
            "frames": self.frames >= 4,
            "size": self.size >= 32 and self.size % 2 == 0,
            "fps": self.fps > 0,
            "crf": 0 <= self.crf <= 51,
            "captions_per_clip": self.captions_per_clip >= 1,
            "static_questions": self.static_questions >= 0,
            "temporal_questions": self.temporal_questions >= 0,
            "two_event_fraction": 0.0 <= self.two_event_fraction <= 1.0,
            "reversed_pairs": 0.0 <= self.reversed_pairs <= 1.0,
            "ego_videos": self.ego_videos >= 0,
            "ego_mcq_videos": not self.ego or self.ego_mcq_videos >= 5,
            "ego_clips_per_video": not self.ego or self.ego_clips_per_video >= 5,
            "workers": self.workers >= 0,
            "preview": self.preview >= 0,
        }
        rules = {
            "test": "0 or >= 5 (multiple choice needs 4 other clips)",
            "size": "even and >= 32",
            "frames": ">= 4",
            "ego_mcq_videos": ">= 5 with ego (inter-video questions need 5 videos)",
            "ego_clips_per_video": ">= 5 with ego (intra-video questions need 5 clips)",
            "two_event_fraction": "in [0, 1]",
            "reversed_pairs": "in [0, 1]",
            "crf": "in [0, 51]",
        }
        for name, ok in checks.items():
            if not ok:
                rule = rules.get(name, "a valid value")
                raise ValueError(f"SynthConfig.{name}: must be {rule}, got {getattr(self, name)!r}")

    def parameters(self) -> dict[str, Any]:
        """The fields that determine the data (recorded in ``meta.json``)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RUNTIME_FIELDS
        }


@dataclass
class _Clip:
    clip_id: str
    split: str
    scene: Scene
    reversed_of: str | None = None
    captions: list[str] | None = None
    questions: list[Question] | None = None


# ---------------------------------------------------------------------------------------------
# Scene sampling (main process, sequential: determinism does not depend on the worker count)


def _fraction_deck(fraction: float, rng: np.random.Generator, rounds: int = 20) -> Deck:
    yes = round(fraction * rounds)
    return Deck([True] * yes + [False] * (rounds - yes), rng)


class _PlanDealer:
    """Deals balanced clip plans: object counts, event classes and kinds, one or two events."""

    def __init__(self, rng: np.random.Generator, two_event_fraction: float):
        self.rng = rng
        self.objects = Deck([1, 2, 3], rng)
        self.two = _fraction_deck(two_event_fraction, rng)
        self.same = Deck([True, False], rng)
        self.classes = Deck(list(CLASS_KINDS), rng)  # single-event clips
        self.pair_classes = Deck(list(CLASS_KINDS), rng)  # two-event clips
        self.kinds = {c: Deck(k, rng) for c, k in CLASS_KINDS.items()}
        self.backgrounds = Deck(list(BACKGROUNDS), rng)

    def plan(self) -> ClipPlan:
        n = self.objects.draw()
        if not self.two.draw():
            return ClipPlan(n, (self.kinds[self.classes.draw()].draw(),))
        if self.same.draw():  # one object, two different changes (visibility excluded)
            allowed = {"move", "size", "color"}
            c1 = self.pair_classes.draw(allowed=allowed)
            c2 = self.pair_classes.draw(allowed=allowed - {c1})
            return ClipPlan(n, (self.kinds[c1].draw(), self.kinds[c2].draw()), True)
        c1, c2 = self.pair_classes.draw(), self.pair_classes.draw()
        return ClipPlan(max(n, 2), (self.kinds[c1].draw(), self.kinds[c2].draw()), False)

    def scene(self, frames: int) -> Scene:
        background = sample_background(self.rng, self.backgrounds.draw())
        while True:
            plan = self.plan()
            for _ in range(200):
                scene = sample_clip_scene(self.rng, plan, frames, background)
                if scene is not None:
                    return scene


def _split_clips(config: SynthConfig, split: str, count: int) -> list[_Clip]:
    rng = np.random.default_rng([config.seed, _SPLIT_CODES[split]])
    dealer = _PlanDealer(rng, config.two_event_fraction)
    decks = question_decks(rng)
    pairs = int(count * config.reversed_pairs) // 2 if split != "train" else 0
    clips: list[_Clip] = []
    for index in range(count):
        clip_id = f"{split}_{index:05d}"
        if index < 2 * pairs and index % 2 == 1:
            twin = clips[-1]
            clips.append(_Clip(clip_id, split, reverse_scene(twin.scene), twin.clip_id))
        else:
            clips.append(_Clip(clip_id, split, dealer.scene(config.frames)))
        clip = clips[-1]
        n_captions = config.captions_per_clip if split == "train" else 1
        clip.captions = [caption(clip.scene, v) for v in caption_variants(rng, n_captions)]
        clip.questions = select_questions(
            clip.scene, rng, decks, config.static_questions, config.temporal_questions
        )
    return clips


# ---------------------------------------------------------------------------------------------
# Annotation records


def _qa_entries(clips: list[_Clip]) -> list[dict[str, Any]]:
    entries = []
    for clip in clips:
        for k, q in enumerate(clip.questions):
            entries.append(
                {
                    "video": f"{clip.clip_id}.mp4",
                    "question": question_text(clip.scene, q),
                    "answer": answer(clip.scene, q),
                    "question_id": f"{clip.clip_id}-q{k}",
                    "type": q.type,
                    "kind": q.kind,
                }
            )
    return entries


def _retrieval_entries(clips: list[_Clip], split: str) -> list[dict[str, Any]]:
    if split == "train":
        return [{"video": f"{c.clip_id}.mp4", "caption": list(c.captions)} for c in clips]
    return [{"video": f"{c.clip_id}.mp4", "caption": c.captions[0]} for c in clips]


def _mc_entries(clips: list[_Clip], seed: int) -> list[dict[str, Any]]:
    """5 captions per test clip: the right one, its time-reversed version, and 3 of other clips.

    The 3 others are a random clip's caption with its own time-reversed version, plus one more
    random caption. Were the 3 unrelated, a text-only model could pick the right answer out of
    the one minimal (caption, reversed caption) pair half the time; with two pairs and a single
    it can do no better than 1/4 (``meta.json``: ``mc_text_only_bound``).
    """
    rng = np.random.default_rng([seed, _SPLIT_CODES["test"], 99])
    positions = Deck(range(5), rng)
    entries = []
    for index, clip in enumerate(clips):
        variant = caption_variants(rng, 1)[0]
        correct = caption(clip.scene, variant)
        options = [correct, caption(reverse_scene(clip.scene), variant)]
        # the same events (a second true option) or the reversed ones (a second reversed
        # option, e.g. the clip's twin) never come from another clip
        taken = {_signature(clip.scene), _signature(reverse_scene(clip.scene))}
        for other in rng.permutation(len(clips)):
            scene = clips[other].scene
            if len(options) == 5:
                break
            if other == index or _signature(scene) in taken:
                continue
            other_variant = caption_variants(rng, 1)[0]
            texts = [caption(scene, other_variant)]
            if len(options) == 2:  # the first random clip brings its reversed caption too
                texts.append(caption(reverse_scene(scene), other_variant))
            if any(t in options for t in texts):
                continue
            options += texts
            taken |= {_signature(scene), _signature(reverse_scene(scene))}
        if len(options) < 5:
            raise ValueError(f"test split too small for 5 distinct options at {clip.clip_id}")
        wrong = [options[k] for k in 1 + rng.permutation(4)]
        position = positions.draw()
        wrong.insert(position, correct)
        classes = {e.event_class for e in clip.scene.events}
        mc_type = "order" if len(clip.scene.events) > 1 else classes.pop()
        entries.append(
            {"clip_name": clip.clip_id, "options": wrong, "answer": position, "type": mc_type}
        )
    return entries


def _signature(scene: Scene) -> str:
    """What a scene's events are, in words (the caption without context or background)."""
    return caption(scene, CaptionVariant())


def _scene_entries(clips: list[_Clip]) -> list[dict[str, Any]]:
    return [
        {
            "clip_id": c.clip_id,
            "split": c.split,
            "reversed_of": c.reversed_of,
            "scene": c.scene.to_dict(),
            "questions": [
                {"question_id": f"{c.clip_id}-q{k}", "kind": q.kind, "objects": list(q.objects),
                 "param": q.param, "template": q.template}
                for k, q in enumerate(c.questions)
            ],
        }
        for c in clips
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Rendering (process pool)


def _render_job(job: tuple[Scene, str, int, float, int, int | None]) -> str:
    from leanvl.data.synth.render import render_scene
    from leanvl.video.writer import write_video

    scene, path, size, fps, crf, gop = job
    write_video(path, render_scene(scene, size), fps=fps, crf=crf, preset="ultrafast", gop=gop)
    return path


def _worker_init() -> None:
    """Let a render worker keep freed buffers instead of handing them back to the kernel.

    Every clip allocates a few MB of numpy temporaries. With glibc's default thresholds that
    memory is returned to the OS and faulted in again for the next clip: ~1,300 page faults per
    clip, measured as a quarter of the generation's CPU time (system time). Workers do nothing
    but render, so a higher trim threshold (and a fixed mmap threshold) is safe there.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt parameter ids (malloc.h)
    libc.mallopt(m_trim_threshold, 512 << 20)
    libc.mallopt(m_mmap_threshold, 32 << 20)


def _run_jobs(jobs: list, workers: int, progress: Callable[[int, int], None] | None) -> None:
    """Render and encode ``jobs`` in ``workers`` forked processes (results do not depend on it)."""
    total = len(jobs)
    if progress:
        progress(0, total)
    if total == 0:
        return
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(max(1, min(workers, total)), initializer=_worker_init) as pool:
        for done, _ in enumerate(pool.imap_unordered(_render_job, jobs, chunksize=4), 1):
            if progress:
                progress(done, total)


# ---------------------------------------------------------------------------------------------
# Writing


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[Any]) -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(out: Path) -> None:
    """Remove temporary folders of interrupted runs (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def is_generated(out_dir: str | Path, config: SynthConfig) -> bool:
    """Whether ``out_dir`` holds a dataset of this generator version and these parameters."""
    out = Path(out_dir)
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = json.loads(json.dumps(config.parameters()))  # tuples -> lists, as in the file
    return meta.get("version") == GENERATOR_VERSION and meta.get("parameters") == wanted


def generate(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate the synthetic benchmark into ``out_dir`` (see the module docstring for layout).

    Args:
        out_dir: dataset folder to create. If it already holds a dataset generated with the same
            parameters it is returned as is (a missing preview is added).
        config: what to generate (default: the demo size, 2,000/200/200 clips).
        overwrite: replace an existing, different ``out_dir``.
        progress: called as ``progress(done, total)`` while videos are written.

    Returns:
        The dataset folder.

    Raises:
        FileExistsError: ``out_dir`` exists, is not this dataset, and ``overwrite`` is False.
    """
    config = config or SynthConfig()
    out = Path(out_dir).resolve()
    if is_generated(out, config) and not overwrite:
        if config.preview and not (out / "preview.png").is_file():
            from leanvl.data.synth.preview import write_preview

            write_preview(out, config.preview, out / "preview.png")
        return out
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"'{out}': exists and is not a synthetic dataset with these parameters "
            "(use overwrite=True / --force to replace it)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp, config, progress)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _build(root: Path, config: SynthConfig, progress) -> None:
    clips = {s: _split_clips(config, s, getattr(config, s)) for s in SPLITS}
    ego_videos = (
        sample_ego_videos(config.seed, config.ego_videos, config.ego_mcq_videos,
                          config.ego_clips_per_video, config.frames)
        if config.ego
        else []
    )  # fmt: skip
    jobs = [
        (c.scene, str(root / "videos" / f"{c.clip_id}.mp4"), config.size, config.fps, config.crf,
         None)
        for s in SPLITS for c in clips[s]
    ] + [
        (v.scene, str(root / "videos_ego" / v.video_uid / "0.mp4"), config.size, config.fps,
         config.crf, config.frames)
        for v in ego_videos
    ]  # fmt: skip
    (root / "videos").mkdir(parents=True)
    workers = config.workers or os.cpu_count() or 1
    _run_jobs(jobs, workers, progress)

    ann = root / "annotations"
    ann.mkdir()
    qa = {s: _qa_entries(clips[s]) for s in SPLITS}
    for s in SPLITS:
        _write_json(ann / f"ret_{s}.json", _retrieval_entries(clips[s], s))
        _write_json(ann / f"qa_{s}.json", qa[s])
    _write_json(ann / "qa_answers.json", list(ANSWER_VOCAB))
    mc = _mc_entries(clips["test"], config.seed) if clips["test"] else []
    _write_jsonl(ann / "mc_test.jsonl", mc)
    _write_jsonl(ann / "scenes.jsonl", [e for s in SPLITS for e in _scene_entries(clips[s])])
    ego = None
    if config.ego:
        rows = egoclip_rows(ego_videos, config.frames, config.fps)
        mcq = egomcq(rows, config.seed)
        (ann / "egoclip.csv").write_text(egoclip_csv(rows), encoding="utf-8")
        _write_json(ann / "egomcq.json", mcq)
        _write_jsonl(
            ann / "ego_scenes.jsonl",
            [{"video_uid": v.video_uid, "held_out": v.held_out, "scene": v.scene.to_dict()}
             for v in ego_videos],
        )  # fmt: skip
        ego = (rows, mcq)
    meta = build_meta(config, GENERATOR_VERSION, clips, qa, mc, ego)
    _write_json(root / "meta.json", meta)
    (root / "README.md").write_text(dataset_card(meta), encoding="utf-8")
    if config.preview:
        from leanvl.data.synth.preview import write_preview

        write_preview(root, config.preview, root / "preview.png")
