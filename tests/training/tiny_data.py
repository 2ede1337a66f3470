"""A tiny video-text dataset written as real mp4 files, for the training tests.

Each clip shows one coloured square moving left or right over 8 frames (32x32): colour is a
static property, direction a temporal one (reversing the clip flips it). Annotations use the
formats leanvl's readers read (retrieval JSON, QA JSON with types, MC jsonl, answer list).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leanvl.video.writer import write_video

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 60, 230),
    "yellow": (230, 220, 30),
}
DIRECTIONS = ("left", "right")


def _clip(
    color: tuple[int, int, int], direction: str, offset: int, frames: int, size: int
) -> np.ndarray:
    video = np.full((frames, size, size, 3), 40, dtype=np.uint8)
    side = size // 4
    span = size - side
    for t in range(frames):
        x = int(round(t * span / (frames - 1)))
        x = x if direction == "right" else span - x
        y = (offset * 3) % (size - side)
        video[t, y : y + side, x : x + side] = color
    return video


def make_tiny_dataset(
    root: Path, n_train: int = 24, n_test: int = 16, frames: int = 8, size: int = 32
) -> Path:
    """Write the dataset under ``root`` (``videos/``, ``annotations/``) and return ``root``."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    names = list(COLORS)
    splits = {"train": range(n_train), "test": range(n_train, n_train + n_test)}
    answers = sorted(set(names) | set(DIRECTIONS))
    for split, ids in splits.items():
        ret, qa, mc = [], [], []
        for i in ids:
            color, direction = names[i % 4], DIRECTIONS[(i // 4) % 2]
            video = f"clip{i:03d}.mp4"
            write_video(
                root / "videos" / video, _clip(COLORS[color], direction, i, frames, size), fps=8
            )
            other = DIRECTIONS[1 - DIRECTIONS.index(direction)]
            caption = f"a {color} square moves {direction}"
            ret.append({"video": video, "caption": [caption, f"the {color} box goes {direction}"]})
            qa.append(
                {
                    "video": video,
                    "question": "what colour is the square?",
                    "answer": color,
                    "type": "static",
                    "kind": "color",
                    "question_id": f"{i}-c",
                }
            )
            qa.append(
                {
                    "video": video,
                    "question": "which way does the square move?",
                    "answer": direction,
                    "type": "temporal",
                    "kind": "direction",
                    "question_id": f"{i}-d",
                }
            )
            wrong = [f"a {c} square moves {direction}" for c in names if c != color][:3]
            options = [caption, f"a {color} square moves {other}", *wrong]
            order = [(i + k) % 5 for k in range(5)]
            mc.append(
                {
                    "clip_name": video,
                    "options": [options[k] for k in order],
                    "answer": order.index(0),
                    "type": "temporal" if i % 2 else "static",
                }
            )
        (root / "annotations" / f"ret_{split}.json").write_text(json.dumps(ret))
        (root / "annotations" / f"qa_{split}.json").write_text(json.dumps(qa))
        if split == "test":
            (root / "annotations" / "mc_test.jsonl").write_text(
                "\n".join(json.dumps(m) for m in mc) + "\n"
            )
    (root / "annotations" / "qa_answers.json").write_text(json.dumps(answers))
    return root
