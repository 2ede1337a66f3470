"""A PNG contact sheet of synthetic clips with their captions, so a person can see the data.

Frames come from decoding the written mp4 files (what a model will see after H.264), captions
and questions from the annotation files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_PAD = 4
_LINE = 12


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _pick_frames(frames: np.ndarray, count: int) -> list[int]:
    n = len(frames)
    return sorted({round(k * (n - 1) / max(count - 1, 1)) for k in range(count)})


def write_preview(
    dataset: str | Path, num_clips: int, path: str | Path | None = None, frames_per_clip: int = 6
) -> Path:
    """Write a contact sheet of the first ``num_clips`` test clips (train clips if no test).

    Each row shows ``frames_per_clip`` evenly spaced decoded frames (frame numbers above), the
    caption, and the clip's first temporal and static question with their answers.

    Args:
        dataset: a folder written by :func:`leanvl.data.synth.generate`.
        num_clips: rows in the sheet.
        path: output PNG (default ``<dataset>/preview.png``).
        frames_per_clip: frames shown per clip.

    Returns:
        The PNG path.
    """
    dataset = Path(dataset)
    path = Path(path) if path is not None else dataset / "preview.png"
    ann = dataset / "annotations"
    split = "test" if json.loads((ann / "ret_test.json").read_text()) else "train"
    entries = json.loads((ann / f"ret_{split}.json").read_text())[:num_clips]
    questions: dict[str, list[dict]] = {}
    for q in json.loads((ann / f"qa_{split}.json").read_text()):
        questions.setdefault(q["video"], []).append(q)
    twins = {}
    for line in (ann / "scenes.jsonl").read_text().splitlines():
        scene = json.loads(line)
        if scene["reversed_of"]:
            twins[scene["clip_id"]] = scene["reversed_of"]
    font = ImageFont.load_default()
    rows = []
    for entry in entries:
        frames = _decode(dataset / "videos" / entry["video"])
        picked = _pick_frames(frames, frames_per_clip)
        rows.append(_row(entry, frames, picked, questions.get(entry["video"], []), twins, font))
    width = max(r.width for r in rows) if rows else 1
    sheet = Image.new("RGB", (width, sum(r.height for r in rows) or 1), (255, 255, 255))
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    sheet.save(tmp)
    os.replace(tmp, path)
    return path


def _row(entry, frames, picked, questions, twins, font) -> Image.Image:
    size = frames.shape[1]
    clip_id = entry["video"].removesuffix(".mp4")
    captions = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
    lines = [
        f"{clip_id}" + (f"  (= {twins[clip_id]} played backwards)" if clip_id in twins else "")
    ]
    lines.append(f"caption: {captions[0]}")
    for kind_type in ("temporal", "static"):
        q = next((q for q in questions if q["type"] == kind_type), None)
        if q:
            lines.append(f"{kind_type} Q: {q['question']}  A: {q['answer']}")
    text_width = max(int(font.getlength(line)) for line in lines) + 2 * _PAD
    width = max(len(picked) * (size + _PAD) + _PAD, text_width)
    height = _LINE + size + _PAD + len(lines) * _LINE + 2 * _PAD
    row = Image.new("RGB", (max(width, 8), height), (255, 255, 255))
    draw = ImageDraw.Draw(row)
    for k, t in enumerate(picked):
        x = _PAD + k * (size + _PAD)
        draw.text((x, 0), f"t={t}", fill=(90, 90, 90), font=font)
        row.paste(Image.fromarray(frames[t]), (x, _LINE))
    y = _LINE + size + _PAD
    for line in lines:
        draw.text((_PAD, y), line, fill=(0, 0, 0), font=font)
        y += _LINE
    draw.line([(0, height - 1), (width, height - 1)], fill=(200, 200, 200))
    return row
