"""Synthetic benchmark on disk: determinism, readers, decoded pixels vs answers, ego, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from leanvl.data.annotations import (
    read_answer_vocab,
    read_egoclip_csv,
    read_egomcq_json,
    read_mc_jsonl,
    read_qa_json,
    read_retrieval_json,
)
from leanvl.data.synth import SynthConfig, generate, reverse_scene, scene_from_dict
from leanvl.data.synth.scene import COLORS, colors_ever
from leanvl.data.synth.text import (
    BACKGROUND_PHRASES,
    CONTEXTS,
    EGO_VERBS,
    EVENT_PHRASES,
    TWO_EVENTS,
    CaptionVariant,
    caption,
)
from leanvl.video.decode import probe, read_frames

TINY = SynthConfig(
    train=12, val=6, test=10, frames=8, size=64, seed=7, ego=True, ego_videos=2,
    ego_mcq_videos=5, ego_clips_per_video=5, workers=2, preview=3,
)  # fmt: skip
ANNOTATIONS = (
    "ret_train.json", "ret_val.json", "ret_test.json", "qa_train.json", "qa_val.json",
    "qa_test.json", "qa_answers.json", "mc_test.jsonl", "scenes.jsonl", "egoclip.csv",
    "egomcq.json", "ego_scenes.jsonl",
)  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "tiny", TINY)


@pytest.fixture(scope="module")
def scenes(root) -> dict[str, dict]:
    lines = (root / "annotations" / "scenes.jsonl").read_text().splitlines()
    return {e["clip_id"]: e for e in map(json.loads, lines)}


def _decode_all(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_same_arguments_give_identical_annotations_and_frames(root, tmp_path):
    # another process, another str-hash seed, one worker instead of two
    config = {**vars(TINY), "workers": 1}
    code = (
        "import sys; from leanvl.data.synth import SynthConfig, generate; "
        f"generate(sys.argv[1], SynthConfig(**{config!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "again")], check=True, env=env)
    again = tmp_path / "again"
    for name in ANNOTATIONS:
        assert (again / "annotations" / name).read_bytes() == (
            root / "annotations" / name
        ).read_bytes(), name
    assert (again / "meta.json").read_bytes() == (root / "meta.json").read_bytes()
    assert (again / "README.md").read_bytes() == (root / "README.md").read_bytes()
    videos = sorted((root / "videos").glob("*.mp4")) + sorted(root.glob("videos_ego/*/0.mp4"))
    assert len(videos) == 12 + 6 + 10 + 7
    for video in videos:
        twin = again / video.relative_to(root)
        assert np.array_equal(_decode_all(video), _decode_all(twin)), video.name
    other = generate(tmp_path / "other", SynthConfig(**{**vars(TINY), "seed": 8, "ego": False}))
    assert (other / "annotations" / "qa_test.json").read_bytes() != (
        root / "annotations" / "qa_test.json"
    ).read_bytes()


def test_every_annotation_file_is_read_back_by_the_readers(root):
    ann, meta = root / "annotations", json.loads((root / "meta.json").read_text())
    counts = meta["counts"]
    vocab = read_answer_vocab(ann / "qa_answers.json")
    for split in ("train", "val", "test"):
        retrieval = read_retrieval_json(ann / f"ret_{split}.json")
        assert len(retrieval) == counts["clips"][split] == getattr(TINY, split)
        per_clip = TINY.captions_per_clip if split == "train" else 1
        assert all(len(r.captions) == per_clip for r in retrieval)
        assert sum(len(r.captions) for r in retrieval) == counts["captions"][split]
        assert all(len(set(r.captions)) == len(r.captions) for r in retrieval)
        qa = read_qa_json(ann / f"qa_{split}.json")
        assert Counter(q.type for q in qa) == counts["qa"][split]
        assert {q.answer for q in qa} <= set(vocab)
        assert {q.video for q in qa} == {r.video for r in retrieval}
        for record in retrieval:
            info = probe(root / "videos" / record.video)
            assert (info.num_frames, info.width, info.height) == (8, 64, 64)
            assert info.fps == pytest.approx(TINY.fps)
    mc = read_mc_jsonl(ann / "mc_test.jsonl")
    assert len(mc) == counts["mc_test"] == TINY.test
    assert Counter(m.answer for m in mc).most_common(1)[0][1] <= 3  # positions dealt evenly
    egoclip = read_egoclip_csv(ann / "egoclip.csv")
    assert len(egoclip) == counts["ego"]["egoclip_rows"] == 2 * 5
    egomcq = read_egomcq_json(ann / "egomcq.json")
    assert Counter("intra" if q.intra else "inter" for q in egomcq) == counts["ego"]["egomcq"]


def test_meta_chance_levels_match_the_files(root):
    meta = json.loads((root / "meta.json").read_text())
    ann = root / "annotations"
    train = json.loads((ann / "qa_train.json").read_text())
    test = json.loads((ann / "qa_test.json").read_text())
    for kind_type in ("static", "temporal"):
        answers = Counter(e["answer"] for e in train if e["type"] == kind_type)
        top = max(answers.items(), key=lambda kv: (kv[1], kv[0]))[0]
        chosen = [e for e in test if e["type"] == kind_type]
        recorded = meta["chance"]["qa"][kind_type]
        assert recorded["majority_answer"] == top
        assert recorded["majority_accuracy"] == round(
            sum(e["answer"] == top for e in chosen) / len(chosen), 4
        )
    assert meta["chance"]["mc"] == 0.2
    assert meta["chance"]["retrieval"] == {"val": round(1 / 6, 4), "test": 0.1}
    assert meta["parameters"]["seed"] == 7 and "workers" not in meta["parameters"]
    assert meta["version"] and meta["horizontal_flip_safe"] is False


def _mask(frame: np.ndarray, colors, tol: int = 45) -> np.ndarray:
    pixels = frame.astype(np.int16)
    hits = [np.abs(pixels - np.asarray(COLORS[c], dtype=np.int16)).max(-1) <= tol for c in colors]
    return np.logical_or.reduce(hits)


def _pixel_answer(kind: str, frames: np.ndarray, scene, obj: int) -> str:
    """Answer a temporal question from the first and last sampled frames only."""
    first, last = frames[0], frames[-1]
    colors = sorted(colors_ever(scene, obj))
    if kind == "direction":
        (y0, x0), (y1, x1) = (np.argwhere(_mask(f, colors)).mean(0) for f in (first, last))
        dx, dy = x1 - x0, y1 - y0
        if abs(dx) > abs(dy):
            return "right" if dx > 0 else "left"
        return "down" if dy > 0 else "up"
    if kind == "size_change":
        return "bigger" if _mask(last, colors).sum() > _mask(first, colors).sum() else "smaller"
    if kind == "visibility":
        return "appears" if _mask(last, colors).sum() > _mask(first, colors).sum() else "disappears"
    (event,) = scene.events_of(obj, "color")
    frame = last if kind == "color_end" else first
    a, b = (_mask(frame, [c]).sum() for c in (event.start, event.end))
    return event.end if b > a else event.start


def test_answers_match_decoded_pixels_and_temporal_ones_flip_when_frames_are_reversed(root, scenes):
    checked = Counter()
    for split in ("train", "val", "test"):
        for entry in json.loads((root / "annotations" / f"qa_{split}.json").read_text()):
            kind = entry["kind"]
            if kind == "color":  # static: the named colour is there in every sampled frame
                frames, _ = read_frames(root / "videos" / entry["video"], 3, sample="uniform")
                assert all(_mask(f, [entry["answer"]]).sum() >= 30 for f in frames.numpy())
                checked[kind] += 1
            if kind not in ("direction", "size_change", "visibility", "color_end", "color_start"):
                continue
            clip = scenes[entry["video"].removesuffix(".mp4")]
            spec = next(q for q in clip["questions"] if q["question_id"] == entry["question_id"])
            scene = scene_from_dict(clip["scene"])
            # All-in-one evaluation samples 3 frames with "uniform"
            frames, _ = read_frames(root / "videos" / entry["video"], 3, sample="uniform")
            frames = frames.numpy()
            obj = spec["objects"][0]
            assert _pixel_answer(kind, frames, scene, obj) == entry["answer"], entry
            backwards = _pixel_answer(kind, frames[::-1], scene, obj)
            assert backwards != entry["answer"], entry
            checked[kind] += 1
    assert sum(checked.values()) >= 15 and len(checked) >= 5, checked


def test_reversed_twins_are_the_clips_played_backwards(root, scenes):
    twins = [(c["reversed_of"], cid) for cid, c in scenes.items() if c["reversed_of"]]
    assert len(twins) == 1 + 2  # half of val (6) and of test (10) in (clip, reversed) pairs
    for original, twin in twins:
        a = _decode_all(root / "videos" / f"{original}.mp4").astype(np.float32)
        b = _decode_all(root / "videos" / f"{twin}.mp4").astype(np.float32)[::-1]
        assert np.abs(a - b).mean() < 1.5  # same pixels up to H.264 noise
        assert np.abs(a - a[::-1]).mean() > 3 * np.abs(a - b).mean()


def _all_captions(scene) -> set[str]:
    return {
        caption(scene, CaptionVariant(p, c, x, b))
        for p in range(len(EVENT_PHRASES["grow"]))
        for c in range(len(TWO_EVENTS))
        for x in range(len(CONTEXTS))
        for b in range(len(BACKGROUND_PHRASES))
    }


def test_multiple_choice_offers_the_reversed_caption(root, scenes):
    for item in read_mc_jsonl(root / "annotations" / "mc_test.jsonl"):
        scene = scene_from_dict(scenes[item.video]["scene"])
        assert len(set(item.options)) == 5
        true, reversed_captions = _all_captions(scene), _all_captions(reverse_scene(scene))
        assert item.options[item.answer] in true
        wrong = [o for k, o in enumerate(item.options) if k != item.answer]
        assert sum(o in reversed_captions for o in wrong) == 1
        assert not any(o in true for o in wrong)
        # among the 3 random options, one is the reversed caption of another: two minimal pairs
        others = [o for o in wrong if o not in reversed_captions]
        scenes_of = {
            o: scene_from_dict(e["scene"])
            for e in scenes.values()
            for o in others
            if o in _all_captions(scene_from_dict(e["scene"]))
        }
        pairs = {
            frozenset((a, b))
            for a in others
            for b in others
            if a in scenes_of and b in _all_captions(reverse_scene(scenes_of[a]))
        }
        assert len(pairs) == 1, others
        expected_type = "order" if len(scene.events) == 2 else scene.events[0].event_class
        assert item.type == expected_type


def test_ego_questions_are_consistent_with_their_video_grouping(root):
    ann = root / "annotations"
    rows = read_egoclip_csv(ann / "egoclip.csv")
    train_videos = {r.video_uid for r in rows}
    ego_scenes = [json.loads(line) for line in (ann / "ego_scenes.jsonl").read_text().splitlines()]
    held_out = {e["video_uid"] for e in ego_scenes if e["held_out"]}
    assert len(train_videos) == 2 and len(held_out) == 5 and not train_videos & held_out
    questions = read_egomcq_json(ann / "egomcq.json")
    raw = json.loads((ann / "egomcq.json").read_text())
    assert len(questions) == 2 * 5 * 5  # every held-out clip: one intra + one inter question
    for q in questions:
        assert q.intra == (raw[q.key]["types"] == 2)
        right = q.choices[q.answer]
        assert (right.video_uid, right.clip_start, right.clip_text) == (
            q.query.video_uid, q.query.clip_start, q.query.clip_text,
        )  # fmt: skip
        uids = [c.video_uid for c in q.choices]
        if q.intra:
            assert set(uids) == {q.query.video_uid}
        else:
            assert len(set(uids)) == 5  # inter: 5 different videos
        assert set(uids) <= held_out
        assert len({c.clip_text for c in q.choices}) == 5
        for c in q.choices:
            assert c.clip_end - c.clip_start == pytest.approx(TINY.frames / TINY.fps)


def test_ego_clip_windows_show_their_narration(root):
    ann = root / "annotations"
    rows = read_egoclip_csv(ann / "egoclip.csv")
    ego_scenes = {
        e["video_uid"]: scene_from_dict(e["scene"])
        for e in map(json.loads, (ann / "ego_scenes.jsonl").read_text().splitlines())
    }
    for row in rows:
        assert row.clip_text.startswith("#C C ")
        verb = EGO_VERBS[row.tag_verb[0]]
        assert row.clip_text.split()[2] in (verb, verb + "s", verb + "es")
        video = root / "videos_ego" / row.video_uid / "0.mp4"
        info = probe(video)
        assert info.duration == pytest.approx(row.video_dur, abs=1e-6)
        if verb != "move":
            continue
        scene = ego_scenes[row.video_uid]
        event = scene.events[row.narration_ind]
        frames, indices = read_frames(
            video, 3, sample="uniform", start=row.clip_start, end=row.clip_end
        )
        assert all(row.clip_start <= i / TINY.fps < row.clip_end for i in indices)
        direction = _pixel_answer("direction", frames.numpy(), scene, event.obj)
        assert row.clip_text.endswith(direction)


def test_preview_shows_the_requested_clips(root):
    image = Image.open(root / "preview.png")
    assert image.width >= 6 * 64 and image.height >= 3 * (64 + 40)
    pixels = np.asarray(image.convert("RGB"))
    first = _decode_all(root / "videos" / "test_00000.mp4")[0]
    # the first thumbnail is the decoded first frame of the first test clip
    assert np.array_equal(pixels[12 : 12 + 64, 4 : 4 + 64], first)


def test_rerun_reuses_a_finished_dataset_and_refuses_a_different_one(root):
    before = (root / "meta.json").stat().st_mtime_ns
    assert generate(root, TINY) == root
    assert (root / "meta.json").stat().st_mtime_ns == before
    preview = (root / "preview.png").read_bytes()
    (root / "preview.png").unlink()
    generate(root, TINY)  # a missing preview is added, nothing else is redone
    assert (root / "preview.png").read_bytes() == preview
    assert (root / "meta.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="not a synthetic dataset with these parameters"):
        generate(root, SynthConfig(**{**vars(TINY), "seed": 1}))


def test_interrupted_run_leaves_nothing_and_stale_partials_are_removed(tmp_path):
    out = tmp_path / "data"
    stale = tmp_path / ".data.partial-999999999"
    (stale / "videos").mkdir(parents=True)

    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    small = SynthConfig(train=5, val=0, test=5, frames=4, size=32, workers=1)
    with pytest.raises(KeyboardInterrupt):
        generate(out, small, progress=interrupt)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # stale partial of a dead pid gone
    assert generate(out, small) == out
    assert len(list((out / "videos").glob("*.mp4"))) == 10


def test_cli_writes_a_dataset_and_reports_usage_errors(tmp_path):
    from leanvl.cli import app

    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["data", "synth", str(out), "--clips", "15", "--frames", "4", "--size", "32"]
    result = runner.invoke(app, [*args, "--preview", "2", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (out / "preview.png").is_file()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"]["clips"] == {"train": 5, "val": 5, "test": 5}
    again = runner.invoke(app, [*args, "--preview", "2"])
    assert again.exit_code == 0 and "up to date" in again.output
    assert runner.invoke(app, [*args, "--seed", "3"]).exit_code == 1
    bad = runner.invoke(app, ["data", "synth", str(out), "--splits", "train=3,foo=2"])
    assert bad.exit_code == 2 and "foo=2" in bad.output
    assert runner.invoke(app, [*args, "--splits", "train=3"]).exit_code == 2
    assert runner.invoke(app, ["data", "synth", str(out), "--size", "33"]).exit_code == 2
    assert os.listdir(out)  # the failed calls left the dataset alone
