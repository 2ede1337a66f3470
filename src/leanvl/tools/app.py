"""``leanvl serve``: a local web app to search a video index and ask questions about a video.

Tabs:

- **Search** (with an index): a sentence -> ranked clips with thumbnails, scores and a player
  (optionally re-ranked by the matching head).
- **Ask**: upload a clip and ask a question, answered by All-in-one's open-ended QA head
  (answer vocabulary from the checkpoint's ``extra.answers``) or, for a Video-Panda model, by
  greedy generation (:class:`~leanvl.evaluation.videopanda_answer.VideoPandaAnswerer`, the
  preprocessing of ``leanvl ask``). For SViTT models the tab draws
  the patches that survive each node-sparsity drop layer over the frames (the SViTT paper's
  Figure 2: Li et al., "SViTT: Temporal Learning of Sparse Video-Text Transformers", CVPR 2023).

Safety defaults: binds 127.0.0.1, refuses uploads above ``max_upload_mb`` (Gradio's own limit
and a check in the handler) and files that are not a video type or do not decode, keeps every
temporary file (uploads, thumbnails) in one folder that is deleted when the server stops.
Needs the ``app`` extra (gradio).
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from leanvl.tools.adapters import ModelAdapter, load_adapter
from leanvl.tools.index import VIDEO_EXTENSIONS, VideoIndex, search
from leanvl.video import VideoDecodeError, read_frames

__all__ = ["UploadError", "build_app", "check_upload", "pruning_figure", "serve"]

DEFAULT_MAX_UPLOAD_MB = 100


class UploadError(ValueError):
    """An uploaded file was refused; the message is shown to the user."""


def check_upload(path: str | Path | None, max_bytes: int) -> Path:
    """Validate an uploaded file: present, a video type, within ``max_bytes``.

    Raises:
        UploadError: with a message for the user.
    """
    if not path:
        raise UploadError("Upload a video first.")
    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        allowed = ", ".join(VIDEO_EXTENSIONS)
        raise UploadError(f"'{path.name}' is not a video file (allowed: {allowed}).")
    size = path.stat().st_size
    if size > max_bytes:
        raise UploadError(
            f"'{path.name}' is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB."
        )
    return path


def thumbnail(path: str | Path, size: int = 160) -> np.ndarray:
    """The middle frame of a video, shorter side ``size``, as uint8 (H, W, 3)."""
    frames, _ = read_frames(path, 1, sample="middle", size=size)
    return frames[0].numpy()


def pruning_figure(adapter: ModelAdapter, path: str | Path, cell: int = 112) -> np.ndarray:
    """SViTT node sparsity drawn over the frames: one row per stage (all patches, then after
    each drop layer), one column per frame; dropped patches are dimmed and tinted.

    Returns:
        uint8 (rows * cell, frames * cell, 3) image.
    """
    clip = adapter.load_clip(path)
    kept = adapter.kept_patches(clip)
    spec = adapter.clip
    frames, _ = read_frames(path, spec.num_frames, sample=spec.sample, size=(cell, cell))
    frames = frames.numpy().astype(np.float32)
    t = frames.shape[0]
    grid = spec.size // adapter.model.config.patch_size
    n = grid * grid
    rows = [np.ones(t * n, dtype=bool)]
    for idx in kept:
        mask = np.zeros(t * n, dtype=bool)
        mask[idx.numpy()] = True
        rows.append(mask)
    out = np.zeros((len(rows) * cell, t * cell, 3), dtype=np.uint8)
    up = math.ceil(cell / grid)
    for r, mask in enumerate(rows):
        for f in range(t):
            m = mask[f * n : (f + 1) * n].reshape(grid, grid)
            m = np.kron(m, np.ones((up, up), dtype=bool))[:cell, :cell, None]
            dimmed = frames[f] * 0.25 + np.array([40.0, 0.0, 60.0])
            img = np.where(m, frames[f], dimmed)
            out[r * cell : (r + 1) * cell, f * cell : (f + 1) * cell] = img.clip(0, 255)
    return out


def _answer_markdown(
    adapter: ModelAdapter, path: Path, question: str, answerer: Any = None, max_new_tokens=64
) -> str:
    if not question or not question.strip():
        raise UploadError("Type a question.")
    if answerer is not None:  # Video-Panda: generation
        text = answerer.answer(path, question.strip(), max_new_tokens=max_new_tokens)
        return f"**{text}**" if text else "*(the model generated an empty answer)*"
    if adapter.family == "allinone":
        clip = adapter.load_clip(path)
        answers = adapter.answer(clip, question.strip())
        lines = [f"**{answers[0][0]}**", ""]
        lines += [f"- {a}: {p:.1%}" for a, p in answers]
        return "\n".join(lines)
    raise UploadError(
        f"This {adapter.family} model has no question-answering head here; use an All-in-one "
        "model trained with QA (e.g. leanvl demo's DIR/model) or a Video-Panda model."
    )


def build_app(
    model: str | Path | ModelAdapter,
    index: str | Path | None = None,
    *,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
):
    """Build the Gradio Blocks app (not launched).

    Args:
        model: checkpoint folder or loaded adapter.
        index: optional index folder built with the same model (enables the Search tab).
        max_upload_mb: largest accepted upload.

    Raises:
        ValueError: the index was built with another model.
    """
    import gradio as gr

    adapter = model if isinstance(model, ModelAdapter) else load_adapter(model)
    answerer = None
    if adapter.family == "videopanda":
        from leanvl.evaluation.videopanda_answer import VideoPandaAnswerer

        answerer = VideoPandaAnswerer(adapter.folder, model=adapter.model)
    if index is not None and not adapter.searchable:
        raise ValueError(f"'{adapter.folder}': a {adapter.family} model cannot search an index")
    max_bytes = int(max_upload_mb * 1e6)
    opened: VideoIndex | None = None
    if index is not None:
        # Opened once (the vectors are read again only when `leanvl index` rebuilds them);
        # Gradio runs handlers on worker threads, so the calls are serialised by a lock.
        opened = VideoIndex.open(index, shared=True)
        built_with = opened.meta.get("model_id")
        if built_with != adapter.model_id:
            opened.close()
            raise ValueError(
                f"'{index}': built with model {built_with}, but the app runs {adapter.model_id}"
            )
    index_lock = threading.Lock()

    def run_search(query: str, k: float, rerank: bool):
        if not query or not query.strip():
            raise gr.Error("Type a sentence to search for.")
        with index_lock:
            hits = search(opened, query.strip(), int(k), rerank=rerank, model=adapter)
        gallery = []
        for h in hits:
            score = f"{h.score:.3f}" + (f" | ITM {h.match_score:.2f}" if rerank else "")
            try:
                image: Any = thumbnail(h.path)
            except VideoDecodeError:
                image = np.zeros((90, 160, 3), np.uint8)
            gallery.append((image, f"{h.rank}. {Path(h.path).name} ({score})"))
        rows = [[h.rank, Path(h.path).name, round(h.score, 4), h.path] for h in hits]
        first = hits[0].path if hits else None
        return gallery, rows, first, [h.path for h in hits]

    def pick(paths: list[str], evt: gr.SelectData):
        return paths[evt.index] if paths and evt.index < len(paths) else None

    # Gradio finds the event argument by its annotation, a string under postponed evaluation.
    pick.__annotations__["evt"] = gr.SelectData

    def ask(video: str | None, question: str):
        try:
            path = check_upload(video, max_bytes)
            answer = _answer_markdown(adapter, path, question, answerer)
            figure = (
                pruning_figure(adapter, path) if adapter.family in ("svitt", "svitt_ego") else None
            )
        except (UploadError, VideoDecodeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return answer, figure

    def prune_only(video: str | None):
        try:
            path = check_upload(video, max_bytes)
            return pruning_figure(adapter, path)
        except (UploadError, VideoDecodeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None

    with gr.Blocks(title="leanvl", delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"# leanvl\nModel `{adapter.model_id}` from `{adapter.folder}`")
        if index is not None:
            with gr.Tab("Search"):
                with gr.Row():
                    query = gr.Textbox(label="Describe the clip", elem_id="query", scale=4)
                    k = gr.Slider(1, 50, value=8, step=1, label="results")
                    rerank = gr.Checkbox(label="re-rank with the matching head")
                go = gr.Button("Search", elem_id="search-btn", variant="primary")
                gallery = gr.Gallery(label="Results", elem_id="results", columns=4)
                player = gr.Video(label="Selected clip", elem_id="player", interactive=False)
                table = gr.Dataframe(headers=["rank", "file", "score", "path"], elem_id="table")
                paths = gr.State([])
                go.click(run_search, [query, k, rerank], [gallery, table, player, paths])
                query.submit(run_search, [query, k, rerank], [gallery, table, player, paths])
                gallery.select(pick, [paths], [player])
        with gr.Tab("Ask"):
            upload = gr.File(
                label=f"Video (max {max_upload_mb} MB)",
                file_types=list(VIDEO_EXTENSIONS),
                elem_id="upload",
            )
            question = gr.Textbox(label="Question", elem_id="question")
            ask_btn = gr.Button("Ask", elem_id="ask-btn", variant="primary")
            answer = gr.Markdown(elem_id="answer")
            sparsity = gr.Image(
                label="Surviving patches per drop layer (rows) and frame (columns)",
                visible=adapter.family in ("svitt", "svitt_ego"),
                elem_id="sparsity",
            )
            ask_btn.click(ask, [upload, question], [answer, sparsity])
            if adapter.family in ("svitt", "svitt_ego"):
                upload.upload(prune_only, [upload], [sparsity])
    demo.max_upload_bytes = max_bytes
    demo.leanvl_index = opened  # closed by serve() with the app
    return demo


def serve(
    model: str | Path,
    index: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB,
    block: bool = True,
):
    """Launch the app. All temporary files go to one folder removed when the server stops.

    Args:
        model: checkpoint folder.
        index: optional index folder.
        host: interface to bind (loopback by default; use 0.0.0.0 deliberately).
        port: TCP port.
        max_upload_mb: largest accepted upload.
        block: serve until interrupted (False: return the running app, for tests; its
            ``close()`` also deletes the temporary folder ``leanvl_tmp``).
    """
    tmp = Path(tempfile.mkdtemp(prefix="leanvl-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(tmp)
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    demo = build_app(model, index, max_upload_mb=max_upload_mb)
    allowed: list[str] = []
    if index is not None:
        with VideoIndex.open(index) as idx:
            allowed = sorted({str(Path(r["path"]).parent) for r in idx.rows("ok")})
    close = demo.close

    def close_and_clean(*args, **kwargs):
        close(*args, **kwargs)
        if demo.leanvl_index is not None:
            demo.leanvl_index.close()
        shutil.rmtree(tmp, ignore_errors=True)

    demo.close = close_and_clean
    demo.leanvl_tmp = tmp
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            max_file_size=f"{max_upload_mb}mb",
            allowed_paths=allowed,
            prevent_thread_lock=not block,
            show_error=True,
            quiet=True,
        )
    finally:
        if block:
            shutil.rmtree(tmp, ignore_errors=True)
    return demo
