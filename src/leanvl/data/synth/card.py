"""``meta.json`` and the ``README.md`` dataset card of a synthetic benchmark folder.

Chance levels are recorded so results can be read against them: per question type the accuracy
of always giving the most frequent training answer (overall, and per question kind, i.e. what a
text-only model can learn), 0.2 for 5-way multiple choice and EgoMCQ, 1/N for retrieval R@1.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from leanvl.data.synth.text import ANSWER_VOCAB, EGO_VERBS

if TYPE_CHECKING:
    from leanvl.data.synth.dataset import SynthConfig

SPLITS = ("train", "val", "test")


def _majority(entries: list[dict[str, Any]]) -> tuple[str | None, float]:
    counts = Counter(e["answer"] for e in entries)
    if not counts:
        return None, 0.0
    word, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return word, n / len(entries)


def qa_chance(qa: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Accuracy on test of answering with train's most frequent answer, per type and per kind."""
    train, test = qa["train"], qa["test"]
    result: dict[str, Any] = {}
    for kind_type in ("static", "temporal", "all"):
        pick = (lambda e: True) if kind_type == "all" else (lambda e, t=kind_type: e["type"] == t)
        tr, te = [e for e in train if pick(e)], [e for e in test if pick(e)]
        word, _ = _majority(tr or te)
        accuracy = sum(e["answer"] == word for e in te) / len(te) if te else None
        kinds = {e["kind"] for e in te}
        prior_hits = 0
        for kind in kinds:
            kind_word, _ = _majority(
                [e for e in tr if e["kind"] == kind] or [e for e in te if e["kind"] == kind]
            )
            prior_hits += sum(e["answer"] == kind_word for e in te if e["kind"] == kind)
        result[kind_type] = {
            "majority_answer": word,
            "majority_accuracy": _round(accuracy),
            "per_kind_majority_accuracy": _round(prior_hits / len(te)) if te else None,
        }  # fmt: skip
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def build_meta(
    config: SynthConfig, version: str, clips: dict[str, list], qa, mc, ego
) -> dict[str, Any]:
    """The content of ``meta.json`` (no timings or paths, so reruns are byte-identical)."""
    counts: dict[str, Any] = {
        "clips": {s: len(clips[s]) for s in SPLITS},
        "captions": {s: sum(len(c.captions) for c in clips[s]) for s in SPLITS},
        "reversed_pairs": {s: sum(c.reversed_of is not None for c in clips[s]) for s in SPLITS},
        "qa": {s: dict(sorted(Counter(e["type"] for e in qa[s]).items())) for s in SPLITS},
        "qa_kinds": {s: dict(sorted(Counter(e["kind"] for e in qa[s]).items())) for s in SPLITS},
        "qa_answers": {
            s: dict(sorted(Counter(e["answer"] for e in qa[s]).items())) for s in SPLITS
        },
        "mc_test": len(mc),
        "mc_types": dict(sorted(Counter(e["type"] for e in mc).items())),
        "events": {
            s: dict(sorted(Counter(e.kind for c in clips[s] for e in c.scene.events).items()))
            for s in SPLITS
        },
    }
    chance: dict[str, Any] = {
        "qa": qa_chance(qa) if qa["test"] else None,
        "mc": 0.2,
        "mc_text_only_bound": 0.25,
        "retrieval": {s: _round(1 / len(clips[s])) if clips[s] else None for s in ("val", "test")},
    }
    if ego is not None:
        rows, mcq = ego
        counts["ego"] = {
            "videos": config.ego_videos,
            "mcq_videos": config.ego_mcq_videos,
            "egoclip_rows": sum(not r["held_out"] for r in rows),
            "egomcq": dict(
                sorted(
                    Counter("intra" if q["types"] == 2 else "inter" for q in mcq.values()).items()
                )
            ),
            "verbs": dict(
                sorted(Counter(EGO_VERBS[json.loads(r["tag_verb"])[0]] for r in rows).items())
            ),
        }
        chance["egomcq"] = 0.2
    return {
        "generator": "leanvl.data.synth",
        "version": version,
        "parameters": config.parameters(),
        "seed": config.seed,
        "video": {
            "codec": "libx264",
            "pix_fmt": "yuv420p",
            "crf": config.crf,
            "fps": config.fps,
            "frames": config.frames,
            "size": [config.size, config.size],
            "seconds_per_clip": config.frames / config.fps,
        },
        "counts": counts,
        "chance": chance,
        "answer_vocabulary": len(ANSWER_VOCAB),
        "horizontal_flip_safe": False,
    }


def dataset_card(meta: dict[str, Any]) -> str:
    """``README.md`` text describing the dataset of ``meta``."""
    p, c, ch = meta["parameters"], meta["counts"], meta["chance"]
    qa_rows = "\n".join(
        f"| {s} | {c['clips'][s]} | {c['captions'][s]} | {c['qa'][s].get('static', 0)} | "
        f"{c['qa'][s].get('temporal', 0)} |"
        for s in SPLITS
    )
    chance_rows = ""
    if ch["qa"]:
        chance_rows = "\n".join(
            f"| {t} | {v['majority_answer']} | {v['majority_accuracy']} | "
            f"{v['per_kind_majority_accuracy']} |"
            for t, v in ch["qa"].items()
        )
    ego = ""
    if "ego" in c:
        e = c["ego"]
        ego = (
            f"\n## Ego flavour\n\n{e['videos']} ego videos give {e['egoclip_rows']} narrated clips "
            f"in `annotations/egoclip.csv` (EgoVLP columns, tab-separated); {e['mcq_videos']} "
            f"held-out videos give EgoMCQ questions {e['egomcq']} in `annotations/egomcq.json` "
            "(`types`: 1 = inter-video, 2 = intra-video, as EgoVLP's dataset code). Videos: "
            "`videos_ego/<video_uid>/0.mp4`, one keyframe per clip; narrations are first-person "
            "(`#C C moves the red circle left`) with verb ids into "
            f"{list(EGO_VERBS)} and noun ids into the shape list.\n"
        )
    return f"""# leanvl synthetic temporal video-language benchmark

Generated by `leanvl data synth` (generator version {meta["version"]}, seed {p["seed"]}).
Procedural clips of 1-3 coloured shapes on varied backgrounds (plain, gradient, textured,
cluttered) in which something happens over time: an object moves left/right/up/down, grows,
shrinks, appears, disappears or changes colour; {p["two_event_fraction"]:.0%} of clips have two
events in order ("first ..., then ..."). Captions, questions and answers are all computed from
each clip's scene description (`annotations/scenes.jsonl`).

Why: SViTT (Li et al., CVPR 2023) found that shuffling frames barely changes most video-text
models' outputs. Here every question is tagged `static` (answerable from any single frame:
colour, shape, count, presence) or `temporal` (direction, size change, appearance, colour change,
order): a temporal question's answer turns into its opposite when the clip is played backwards,
so a model that ignores frame order cannot tell the answer from its opposite.
{c["reversed_pairs"]["val"]} val and {c["reversed_pairs"]["test"]} test clips are the
time-reversed twins of the clips before them, and every multiple-choice item offers the
time-reversed caption as a distractor.

## Contents

| split | clips | captions | static QA | temporal QA |
|---|---|---|---|---|
{qa_rows}

- `videos/<clip_id>.mp4`: {p["frames"]} frames, {p["size"]}x{p["size"]}, {p["fps"]} fps,
  H.264 crf {p["crf"]}.
- `annotations/ret_{{train,val,test}}.json`: retrieval (`video`, `caption`; train lists
  {p["captions_per_clip"]} paraphrases per clip).
- `annotations/qa_{{train,val,test}}.json`: open-ended QA (`video`, `question`, `answer`,
  `question_id`, `type`, `kind`) over a closed vocabulary of {meta["answer_vocabulary"]} answers
  (`annotations/qa_answers.json`).
- `annotations/mc_test.jsonl`: {c["mc_test"]} multiple-choice items (All-in-one MSR-VTT-MC
  format), 5 captions each: the correct one, its time-reversed version, another clip's caption
  with its time-reversed version, and one more clip's caption;
  `type` = the event class ({c["mc_types"]}).
- `annotations/scenes.jsonl`: the scene description of every clip and the spec of each question.
{ego}
## Chance levels (test split)

Answering every test question with the most frequent training answer:

| questions | majority answer | accuracy | per-kind majority accuracy |
|---|---|---|---|
{chance_rows}

Multiple choice: {ch["mc"]} (a text-only model that spots the two minimal pairs of captions
among the 5 options is bounded by {ch["mc_text_only_bound"]}). Retrieval R@1: {ch["retrieval"]}.

## Caveats

- Do not train with random horizontal flips: a flip turns "moves left" into "moves right"
  (`meta.json`: `horizontal_flip_safe: false`).
- Objects never overlap and stay inside the frame; colours and shapes are distinct within a clip.
- Synthetic data measures temporal sensitivity; it says little about real-video accuracy.
"""
