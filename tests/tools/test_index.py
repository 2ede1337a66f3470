"""Tests of leanvl.tools.index and the ``leanvl index`` / ``leanvl search`` commands."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import leanvl
import leanvl.tools.index as index_mod
from leanvl.cli import search as _search_commands  # noqa: F401  (registers the commands)
from leanvl.cli.app import app
from leanvl.data.annotations import read_retrieval_json
from leanvl.data.synth import SynthConfig, generate
from leanvl.tools.adapters import load_adapter
from leanvl.tools.index import VideoIndex, build_index, collect_sources, search

from .conftest import MODEL, train_vtc

runner = CliRunner()


def _copy_videos(src: Path, dst: Path, n: int) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted((src / "videos").glob("*.mp4"))[:n]:
        out.append(Path(shutil.copy2(p, dst / p.name)))
    return out


def _embedding(folder: Path, path: Path) -> np.ndarray:
    with sqlite3.connect(folder / "index.sqlite") as conn:
        (blob,) = conn.execute(
            "SELECT embedding FROM videos WHERE path = ?", (str(path.resolve()),)
        ).fetchone()
    return np.frombuffer(blob, dtype=np.float32)


def test_collect_sources_annotation_layout(synth_small):
    paths = collect_sources(synth_small / "annotations" / "ret_test.json")
    records = read_retrieval_json(synth_small / "annotations" / "ret_test.json")
    assert [p.name for p in paths] == [r.video for r in records]
    assert all(p.parent == (synth_small / "videos").resolve() for p in paths)


def test_index_values_resume_changes_and_failures(synth_small, untrained_model, tmp_path):
    videos = _copy_videos(synth_small, tmp_path / "videos", 8)
    (tmp_path / "videos" / "notes.txt").write_text("not a video")  # ignored: not a video type
    out = tmp_path / "index"

    # An interrupted run (killed after its first batch of 3) leaves the committed rows.
    def stop_after_first_batch(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(
            tmp_path / "videos", out, untrained_model, batch_size=3, workers=0,
            progress=stop_after_first_batch,
        )  # fmt: skip
    with VideoIndex.open(out) as idx:
        assert len(idx.rows("ok")) == 3
        assert idx.backend == "exact"  # no FAISS file yet: the database is searched exactly
    report = build_index(tmp_path / "videos", out, untrained_model, batch_size=3, workers=1)
    assert (report.total, report.embedded, report.skipped, report.failed) == (8, 5, 3, [])
    assert report.kind == "flat" and report.vectors == 8

    # Values: each stored vector is the adapter's normalised encode_video of that file.
    adapter = load_adapter(untrained_model)
    clip = adapter.load_clip(videos[5])
    expected = torch.nn.functional.normalize(adapter.model.encode_video(clip[None]), dim=-1)[0]
    np.testing.assert_allclose(_embedding(out, videos[5]), expected.detach().numpy(), atol=1e-5)

    # Unchanged: nothing re-embedded.
    report = build_index(tmp_path / "videos", out, untrained_model, workers=0)
    assert (report.embedded, report.skipped) == (0, 8)

    # A changed file (other content, same name) is re-embedded and gets its new vector.
    old = _embedding(out, videos[0])
    shutil.copyfile(videos[1], videos[0])
    os.utime(videos[0], ns=(1, 1_000_000_000))
    report = build_index(tmp_path / "videos", out, untrained_model, workers=0)
    assert (report.embedded, report.skipped) == (1, 7)
    assert not np.allclose(_embedding(out, videos[0]), old)
    np.testing.assert_allclose(_embedding(out, videos[0]), _embedding(out, videos[1]), atol=1e-6)

    # A corrupt mp4 is recorded with its reason, not retried while unchanged, retried on demand.
    bad = tmp_path / "videos" / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    report = build_index(tmp_path / "videos", out, untrained_model, workers=0)
    assert report.embedded == 0 and [p for p, _ in report.failed] == [str(bad.resolve())]
    reason = report.failed[0][1]
    assert reason and "broken.mp4" not in reason  # the reason itself, path stored separately
    with VideoIndex.open(out) as idx:
        failed = idx.rows("failed")
        ok = idx.rows("ok")
        # the per-search lookup: only the asked ids, only "ok" rows, unknown / -1 ids ignored
        some = [ok[2]["id"], ok[0]["id"], failed[0]["id"], -1, 10**6]
        assert idx.rows_by_id(some) == {r["id"]: r for r in (ok[0], ok[2])}
        assert sorted(idx.rows_by_id(some, status=None)) == sorted(some[:3])
        assert idx.rows_by_id([]) == {}
    assert [(r["path"], r["error"]) for r in failed] == [(str(bad.resolve()), reason)]
    report = build_index(tmp_path / "videos", out, untrained_model, workers=0)
    assert (report.previously_failed, report.failed, report.vectors) == (1, [], 8)
    report = build_index(tmp_path / "videos", out, untrained_model, workers=0, retry_failed=True)
    assert len(report.failed) == 1

    # A deleted file is dropped from the index.
    videos[7].unlink()
    report = build_index(tmp_path / "videos", out, untrained_model, workers=0)
    assert (report.removed, report.vectors) == (1, 7)


def test_other_model_refused(synth_small, untrained_model, tmp_path):
    out = tmp_path / "index"
    build_index([next((synth_small / "videos").glob("*.mp4"))], out, untrained_model, workers=0)
    torch.manual_seed(1)
    other = tmp_path / "other"
    leanvl.save_model(leanvl.create_model("allinone_tiny", **MODEL), other)
    with pytest.raises(ValueError, match="built with model allinone-"):
        build_index(synth_small / "videos", out, other, workers=0)
    with pytest.raises(ValueError, match="built with model"):
        search(out, "a red star", model=other)


def test_search_scores_faiss_and_exact_agree(synth_small, untrained_model, tmp_path, monkeypatch):
    out = tmp_path / "index"
    build_index(synth_small / "videos", out, untrained_model, workers=0)
    adapter = load_adapter(untrained_model)
    query = "a blue diamond comes into view"
    hits = search(out, query, k=5, model=adapter)
    with VideoIndex.open(out) as idx:
        assert idx.backend == "faiss-flat"
        ids, matrix = idx.embeddings()
        paths = {r["id"]: r["path"] for r in idx.rows("ok")}
    sims = matrix @ adapter.encode_texts([query])[0].numpy()
    order = np.argsort(-sims)[:5]
    assert [h.path for h in hits] == [paths[int(ids[i])] for i in order]
    np.testing.assert_allclose([h.score for h in hits], sims[order], atol=1e-5)
    monkeypatch.setattr(index_mod, "faiss", None)  # the core works without the app extra
    exact = search(out, query, k=5, model=adapter)
    assert [h.path for h in exact] == [h.path for h in hits]
    np.testing.assert_allclose([h.score for h in exact], [h.score for h in hits], atol=1e-5)


def test_ivf_above_threshold_finds_itself():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((2000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(100, 2100, dtype=np.int64)
    flat, kind, _ = index_mod._build_faiss(vecs, ids, exact_max=5000)
    assert kind == "flat"
    ivf, kind, params = index_mod._build_faiss(vecs, ids, exact_max=1000)
    assert kind == "ivf" and params == {"nlist": 51, "nprobe": 32}  # min(4*sqrt(2000), 2000//39)
    index_mod.faiss.extract_index_ivf(ivf).nprobe = params["nprobe"]
    _, found = ivf.search(vecs[:50], 1)
    assert (found[:, 0] == ids[:50]).mean() >= 0.98


def test_open_index_sees_a_rebuild(synth_small, untrained_model, tmp_path):
    # leanvl serve keeps one index open (from a worker thread) across queries: the vectors are
    # loaded once, and again only when `leanvl index` has rebuilt them (a new generation).
    _copy_videos(synth_small, tmp_path / "videos", 4)
    out = tmp_path / "index"
    build_index(tmp_path / "videos", out, untrained_model, workers=0)
    adapter = load_adapter(untrained_model)
    idx = VideoIndex.open(out, shared=True)
    try:
        first = search(idx, "a red circle", k=10, model=adapter)
        assert len(first) == 4
        loaded = idx._faiss
        assert search(idx, "a blue star", k=10, model=adapter) and idx._faiss is loaded
        _copy_videos(synth_small, tmp_path / "videos", 6)
        build_index(tmp_path / "videos", out, untrained_model, workers=0)
        with ThreadPoolExecutor(1) as pool:  # another thread, as Gradio's workers
            again = pool.submit(search, idx, "a red circle", 10, model=adapter).result()
        assert len(again) == 6 and idx._faiss is not loaded
    finally:
        idx.close()


def test_batched_query_keeps_each_rows_hits():
    # IVF with one probed list: a query near the small cluster finds only its 2 vectors (the
    # other slots are -1), while a query near the large one fills all 4 slots; the short row
    # must not cut the other's hits (each row is judged on its own ids).
    faiss = pytest.importorskip("faiss")
    small = np.array([[1, 0, 0], [0.99, 0.14, 0]], np.float32)
    large = np.array([[0, 1, 0], [0, 0.99, 0.14], [0.14, 0.99, 0], [0, 0.98, 0.2]], np.float32)
    vecs = np.concatenate([small, large])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    quantizer = faiss.IndexFlatIP(3)
    ivf = faiss.IndexIVFFlat(quantizer, 3, 2, faiss.METRIC_INNER_PRODUCT)
    ivf.train(np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    ivf.nprobe = 1
    index = faiss.IndexIDMap2(ivf)
    index.add_with_ids(vecs, np.arange(10, 16, dtype=np.int64))
    idx = VideoIndex.__new__(VideoIndex)  # only the vector part of the index is used
    idx._load_faiss = lambda: index
    scores, ids = idx.query(np.array([[1, 0, 0], [0, 1, 0]], np.float32), 4)
    assert ids.shape == (2, 4)
    assert sorted(ids[0][ids[0] >= 0].tolist()) == [10, 11] and (ids[0][2:] == -1).all()
    assert np.isneginf(scores[0][2:]).all()
    assert sorted(ids[1].tolist()) == [12, 13, 14, 15]
    assert np.isfinite(scores[1]).all()


def test_cli_index_and_search_json(synth_small, untrained_model, tmp_path):
    out = tmp_path / "index"
    result = runner.invoke(
        app, ["index", str(synth_small / "videos"), "--model", str(untrained_model),
              "--out", str(out), "--workers", "0", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["total"], report["embedded"], report["vectors"]) == (12, 12, 12)
    result = runner.invoke(app, ["search", str(out), "a pink cross sinks", "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"query", "k", "rerank", "backend", "results"}
    assert (payload["query"], payload["k"], payload["rerank"]) == ("a pink cross sinks", 4, False)
    results = payload["results"]
    assert [r["rank"] for r in results] == [1, 2, 3, 4]
    assert set(results[0]) == {"rank", "path", "score", "duration", "num_frames", "match_score"}
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["num_frames"] == 4 and results[0]["duration"] == pytest.approx(0.5)
    lib = search(out, "a pink cross sinks", k=4)
    assert [r["path"] for r in results] == [h.path for h in lib]
    table = runner.invoke(app, ["search", str(out), "a pink cross sinks", "-k", "2"])
    assert table.exit_code == 0 and Path(lib[0].path).name in table.stdout
    missing = runner.invoke(app, ["search", str(tmp_path / "nope"), "x"])
    assert missing.exit_code == 1 and "not a leanvl index" in missing.output


def test_svitt_adapter_indexes_and_reranks(synth_small, tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "svitt"
    leanvl.save_model(leanvl.create_model("svitt_tiny"), folder)
    adapter = load_adapter(folder)
    out = tmp_path / "index"
    videos = sorted((synth_small / "videos").glob("*.mp4"))[:4]
    build_index(videos, out, adapter, workers=0)
    clip = adapter.load_clip(videos[2])
    assert clip.shape == (4, 3, 112, 112)
    gen = torch.Generator().manual_seed(0)
    pooled = adapter.model.encode_video(clip[None], generator=gen).pooled
    text_cls = adapter.model.encode_text(*adapter._tokens(["x"])).cls
    v, _ = adapter.model.itc_features(pooled, text_cls)
    np.testing.assert_allclose(_embedding(out, videos[2]), v[0].detach().numpy(), atol=1e-5)
    hits = search(out, "a green star", k=4, model=adapter, rerank=True)
    match = [h.match_score for h in hits]
    assert match == sorted(match, reverse=True) and len(hits) == 4
    kept = adapter.kept_patches(clip)
    n = (112 // 16) ** 2 * 4
    # ceil(keep_rate * tokens) survive each drop layer (196 patches x 4 frames -> 138 -> 97)
    assert [len(k) for k in kept] == [math.ceil(n * 0.7), math.ceil(math.ceil(n * 0.7) * 0.7)]
    assert set(kept[1].tolist()) <= set(kept[0].tolist()) and int(kept[0].max()) < n


# --------------------------------------------------------------------- trained model quality
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """``allinone_tiny`` trained with VTC for 200 steps of 24 on 400 synthetic clips (~40-75 s)."""
    root = tmp_path_factory.mktemp("trained")
    cfg = SynthConfig(
        train=400, val=0, test=20, frames=4, size=64, captions_per_clip=2,
        reversed_pairs=0.0, two_event_fraction=0.0, workers=1, preview=0,
    )  # fmt: skip
    data = generate(root / "data", cfg)
    return data, train_vtc(data, root / "model", steps=200, batch=24, lr=1.5e-3)


def test_trained_model_finds_matching_clip_in_top5(trained, tmp_path):
    data, model = trained
    out = tmp_path / "index"
    ann = data / "annotations" / "ret_test.json"
    report = build_index(ann, out, model, workers=1)
    assert report.vectors == 20
    records = read_retrieval_json(ann)
    adapter = load_adapter(model)
    with VideoIndex.open(out) as idx:
        hits = [
            {Path(h.path).name for h in search(idx, r.captions[0], k=5, model=adapter)}
            for r in records
        ]
    hit_rate = float(np.mean([r.video in h for r, h in zip(records, hits, strict=True)]))
    # Chance is 5/20 = 0.25; P(>= 12 of 20 hits by chance) < 0.001. Measured: 0.75.
    assert hit_rate >= 0.6, hit_rate


def test_rerank_orders_by_itm_head(trained, tmp_path):
    data, model = trained
    out = tmp_path / "index"
    build_index(data / "annotations" / "ret_test.json", out, model, workers=0)
    adapter = load_adapter(model)
    changed = 0
    for query in ("a yellow square expands", "a blue diamond comes into view", "a pink cross"):
        plain = search(out, query, k=5, model=adapter)
        ranked = search(out, query, k=5, model=adapter, rerank=True)
        assert sorted(h.path for h in ranked) == sorted(h.path for h in plain)
        match = [h.match_score for h in ranked]
        assert match == sorted(match, reverse=True)
        # Each match score is the ITM "match" logit of a joint pass on that clip.
        clip = adapter.load_clip(ranked[0].path)[None]
        ids, mask = adapter._tokens([query])
        with torch.no_grad():
            expected = adapter.model.rank_scores(adapter.model(clip, ids, mask).cls_feats)
        assert match[0] == pytest.approx(expected[0].item(), abs=1e-5)
        changed += [h.path for h in ranked] != [h.path for h in plain]
    assert changed >= 1


@pytest.mark.faults
def test_sigkill_mid_run_then_resume(synth_small, untrained_model, tmp_path):
    """A ``leanvl index`` process killed with SIGKILL keeps its committed batches."""
    out = tmp_path / "index"
    args = [
        "index", str(synth_small / "videos"), "--model", str(untrained_model),
        "--out", str(out), "--workers", "0", "--batch-size", "1",
    ]  # fmt: skip
    code = (
        "import sys, time; import leanvl.cli.search; from leanvl.cli import main\n"
        "import leanvl.tools.index as m\n"
        "slow = m._embed_batches\n"
        "def paced(*a):\n"
        "    for b in slow(*a):\n"
        "        yield b; time.sleep(0.3)\n"
        "m._embed_batches = paced\n"
        "main(sys.argv[1:])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    db = out / "index.sqlite"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.is_file():
            try:
                with sqlite3.connect(db) as conn:
                    (done,) = conn.execute("SELECT COUNT(*) FROM videos").fetchone()
            except sqlite3.OperationalError:  # schema not written yet
                done = 0
            if done >= 3:
                break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert 3 <= done < 12, done
    with VideoIndex.open(out) as idx:
        committed = len(idx.rows("ok"))
    assert 3 <= committed < 12
    report = build_index(synth_small / "videos", out, untrained_model, workers=0)
    assert (report.skipped, report.embedded, report.vectors) == (committed, 12 - committed, 12)
