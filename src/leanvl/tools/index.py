"""Text-to-video search index: embed a video collection once, search it with sentences.

An index is a folder:

- ``index.sqlite``: one row per video file (absolute path, size, mtime, duration, frame count,
  status ``ok``/``failed`` with the failure reason, the L2-normalised contrastive embedding)
  and a ``meta`` table (model folder, model id, embedding size, generation). SQLite is the
  source of truth: every batch of embeddings is committed in one transaction, so a run killed
  at any point leaves a consistent database and the next run continues where it stopped.
- ``vectors.faiss`` + ``manifest.json``: the FAISS index derived from the ``ok`` rows at the
  end of a run (vector ids are SQLite row ids). Both are written to temporary files and renamed
  into place; the manifest carries the generation it was built from, so a search that finds
  the FAISS file older than the database (a run was interrupted) searches the database exactly
  instead and says so.

FAISS index type: exact inner product (``IndexFlatIP``) up to :data:`EXACT_MAX` vectors
(50,000: an exact scan of 50k x 256 floats takes a few milliseconds per query on one core);
above it ``IndexIVFFlat`` with ``nlist = 4 * sqrt(N)`` inverted lists (at least 39 training
points per list) and ``nprobe`` = :data:`IVF_NPROBE`. Without ``faiss`` installed (it is the
``app`` extra) search falls back to an exact matrix product over the database embeddings.

Files are skipped when already indexed with the same size and mtime by the same model; changed
files are re-embedded; files that fail to decode are recorded with the reason and retried only
when they change (or with ``retry_failed``); files gone from disk are dropped.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from leanvl.tools.adapters import ModelAdapter, load_adapter
from leanvl.video import VideoDecodeError, probe

try:  # the ``app`` extra; the index works without it (exact search over the database)
    import faiss
except ImportError:  # pragma: no cover - depends on the environment
    faiss = None

__all__ = [
    "EXACT_MAX",
    "IVF_NPROBE",
    "VIDEO_EXTENSIONS",
    "IndexReport",
    "SearchHit",
    "VideoIndex",
    "build_index",
    "collect_sources",
    "search",
]

EXACT_MAX = 50_000
IVF_NPROBE = 32
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".ogv")
DB_NAME = "index.sqlite"
FAISS_NAME = "vectors.faiss"
MANIFEST_NAME = "manifest.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error TEXT,
    duration REAL,
    num_frames INTEGER,
    fps REAL,
    width INTEGER,
    height INTEGER,
    model_id TEXT NOT NULL,
    embedding BLOB,
    indexed_at REAL NOT NULL
);
"""


# ------------------------------------------------------------------------------- sources
def _read_annotation_videos(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"'{path}': not valid JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise ValueError(f"'{path}': expected a list of records, got {type(rows).__name__}")
    videos: list[str] = []
    for i, row in enumerate(rows):
        name = row.get("video") or row.get("image") or row.get("clip_name")
        if not isinstance(name, str):
            raise ValueError(f"'{path}': record {i}: no 'video' (or 'image', 'clip_name') field")
        if path.suffix == ".jsonl" and "clip_name" in row and not Path(name).suffix:
            name += ".mp4"  # MSR-VTT MC names clips without the extension
        videos.append(name)
    return list(dict.fromkeys(videos))


def collect_sources(source: str | Path, video_root: str | Path | None = None) -> list[Path]:
    """The video files of ``source``: a folder (searched recursively for
    :data:`VIDEO_EXTENSIONS`) or an annotation file (``.json`` list or ``.jsonl`` with
    ``video``/``image``/``clip_name`` fields, as the retrieval/QA/MC readers take them).

    Args:
        source: folder or annotation file.
        video_root: folder the annotation's paths are relative to. Default: the annotation's
            folder, or ``../videos`` beside it when that holds the first video (the layout of
            ``leanvl data synth``).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: the annotation file is malformed (file and record named).
    """
    source = Path(source)
    if source.is_dir():
        return sorted(
            p.resolve()
            for p in source.rglob("*")
            if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
        )
    if not source.is_file():
        raise FileNotFoundError(f"'{source}': no such folder or annotation file")
    names = _read_annotation_videos(source)
    if video_root is None:
        video_root = source.parent
        sibling = source.parent.parent / "videos"
        if names and not (video_root / names[0]).exists() and (sibling / names[0]).exists():
            video_root = sibling
    root = Path(video_root)
    return [(root / n).resolve() for n in names]


# ------------------------------------------------------------------------------- decoding
class _ClipFiles(Dataset):
    """Decodes one file per item in DataLoader workers: (position, clip or None, info, error)."""

    def __init__(self, adapter: ModelAdapter, paths: Sequence[Path]) -> None:
        self.adapter, self.paths = adapter, list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, dict[str, Any], str | None]:
        path = self.paths[i]
        try:
            info = probe(path)
            clip = self.adapter.load_clip(path)
        except VideoDecodeError as exc:
            return i, None, {}, exc.reason if hasattr(exc, "reason") else str(exc)
        except (OSError, ValueError, RuntimeError) as exc:
            return i, None, {}, f"{type(exc).__name__}: {exc}"
        meta = {
            "duration": info.duration,
            "num_frames": info.num_frames,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
        }
        return i, clip, meta, None


def _collate(items):
    return items


# ------------------------------------------------------------------------------- the index
@dataclass
class IndexReport:
    """What one :func:`build_index` run did.

    Attributes:
        total: files in the source.
        embedded: files embedded in this run.
        skipped: files already indexed and unchanged.
        failed: files that failed in this run, as (path, reason).
        previously_failed: unchanged files that had failed before (not retried).
        removed: rows dropped because their file no longer exists.
        vectors: embeddings in the index after the run.
        kind: FAISS index type written (``flat``, ``ivf``) or ``none`` (faiss missing).
        seconds: wall time of the run.
    """

    total: int = 0
    embedded: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    previously_failed: int = 0
    removed: int = 0
    vectors: int = 0
    kind: str = "none"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        rank: 1-based rank.
        path: the video file.
        score: cosine similarity of the contrastive embeddings.
        duration: seconds.
        num_frames: frames in the file.
        match_score: matching-head score (``rerank`` only; the order then follows it).
    """

    rank: int
    path: str
    score: float
    duration: float | None
    num_frames: int | None
    match_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_UNLOADED = object()


class VideoIndex:
    """An index folder (see the module docstring). Open with :meth:`open` or :meth:`create`.

    Args:
        folder: the index folder.
        conn: an open SQLite connection to its database.
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection) -> None:
        self.folder, self.conn = folder, conn
        self._faiss = None
        # The database generation the FAISS index was loaded for (_UNLOADED: not yet).
        self._faiss_generation: object = _UNLOADED

    # -------------------------------------------------------------------- open / create
    @classmethod
    def open(cls, folder: str | Path, shared: bool = False) -> VideoIndex:
        """Open an existing index folder.

        Args:
            folder: the index folder.
            shared: the object will be used from several threads (a server); the caller
                serialises the calls (SQLite's same-thread check is switched off).

        Raises:
            FileNotFoundError: ``folder`` holds no ``index.sqlite``.
        """
        folder = Path(folder)
        db = folder / DB_NAME
        if not db.is_file():
            raise FileNotFoundError(f"'{folder}': not a leanvl index (no {DB_NAME})")
        return cls(folder, sqlite3.connect(db, check_same_thread=not shared))

    @classmethod
    def create(cls, folder: str | Path, adapter: ModelAdapter) -> VideoIndex:
        """Open ``folder`` for indexing with ``adapter``'s model, creating it if needed.

        Raises:
            ValueError: the index was built with another model (ids named).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(folder / DB_NAME)
        conn.executescript(_SCHEMA)
        index = cls(folder, conn)
        meta = index.meta
        existing = meta.get("model_id")
        if existing and existing != adapter.model_id:
            conn.close()
            raise ValueError(
                f"'{folder}': built with model {existing} ({meta.get('model_dir')}), not "
                f"{adapter.model_id} ('{adapter.folder}'); use a new --out folder"
            )
        with conn:
            for key, value in (
                ("model_id", adapter.model_id),
                ("model_dir", str(adapter.folder)),
                ("family", adapter.family),
                ("format", "leanvl-index/1"),
            ):
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        return index

    def close(self) -> None:
        """Close the database."""
        self.conn.close()

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict."""
        try:
            return dict(self.conn.execute("SELECT key, value FROM meta"))
        except sqlite3.OperationalError:
            return {}

    def _bump_generation(self) -> int:
        gen = int(self.meta.get("generation", "0")) + 1
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(gen),))
        return gen

    # ---------------------------------------------------------------------------- rows
    _COLUMNS = "id, path, size, mtime_ns, status, error, duration, num_frames, fps, model_id"

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every row (embedding left out) as dicts, optionally only one ``status``."""
        sql = f"SELECT {self._COLUMNS} FROM videos" + (" WHERE status = ?" if status else "")
        cur = self.conn.execute(sql + " ORDER BY id", (status,) if status else ())
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def rows_by_id(self, ids: Sequence[int], status: str | None = "ok") -> dict[int, dict]:
        """The rows of ``ids`` (embedding left out) by id, optionally only one ``status``: a
        primary-key lookup, so a search reads its ``k`` hits, not the whole table."""
        wanted = sorted({int(i) for i in ids if int(i) >= 0})
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        sql = f"SELECT {self._COLUMNS} FROM videos WHERE id IN ({marks})"
        args: list[Any] = list(wanted)
        if status:
            sql, args = sql + " AND status = ?", [*args, status]
        cur = self.conn.execute(sql, args)
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur}

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (N,), float32 (N, D)) of the ``ok`` rows."""
        cur = self.conn.execute("SELECT id, embedding FROM videos WHERE status = 'ok' ORDER BY id")
        ids, vecs = [], []
        for rid, blob in cur:
            ids.append(rid)
            vecs.append(np.frombuffer(blob, dtype=np.float32))
        dim = int(self.meta.get("dim", "0"))
        matrix = np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)
        return np.asarray(ids, dtype=np.int64), matrix

    def _record(self, path: Path, stat: os.stat_result, model: str, **fields: Any) -> None:
        values = {
            "path": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "model_id": model,
            "indexed_at": time.time(),
            "error": None,
            "embedding": None,
            **fields,
        }
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "path")
        self.conn.execute(
            f"INSERT INTO videos ({cols}) VALUES ({marks}) "
            f"ON CONFLICT(path) DO UPDATE SET {updates}",
            tuple(values.values()),
        )

    # ----------------------------------------------------------------------- vectors
    def write_vectors(self, exact_max: int = EXACT_MAX) -> str:
        """(Re)build ``vectors.faiss`` and ``manifest.json`` from the ``ok`` rows, atomically.

        Args:
            exact_max: largest collection indexed exactly (``IndexFlatIP``); above it IVF.

        Returns:
            The index kind written: ``flat``, ``ivf`` or ``none`` (faiss not installed).
        """
        with self.conn:
            gen = self._bump_generation()
        ids, vecs = self.embeddings()
        kind = "none"
        manifest: dict[str, Any] = {"generation": gen, "count": len(ids), "dim": vecs.shape[1]}
        if faiss is not None and len(ids):
            index, kind, params = _build_faiss(vecs, ids, exact_max)
            _atomic_write_bytes(self.folder / FAISS_NAME, faiss.serialize_index(index).tobytes())
            manifest.update(params)
        manifest["kind"] = kind
        manifest["meta"] = {k: v for k, v in self.meta.items() if k != "generation"}
        _atomic_write_bytes(
            self.folder / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode()
        )
        return kind

    def _load_faiss(self):
        """The FAISS index if it matches the database generation, else None.

        Loaded once per generation: a long-lived open index (``leanvl serve``) reads the
        vectors file again only after ``leanvl index`` has rebuilt it (one SQLite read per
        query to check)."""
        generation = self.meta.get("generation")
        if self._faiss_generation == generation:
            return self._faiss
        self._faiss, self._faiss_generation = None, generation
        manifest_file = self.folder / MANIFEST_NAME
        if faiss is None or not manifest_file.is_file() or not (self.folder / FAISS_NAME).is_file():
            return None
        manifest = json.loads(manifest_file.read_text())
        if str(manifest.get("generation")) != self.meta.get("generation"):
            return None
        index = faiss.deserialize_index(np.fromfile(self.folder / FAISS_NAME, dtype=np.uint8))
        if manifest.get("kind") == "ivf":
            faiss.extract_index_ivf(index).nprobe = int(manifest.get("nprobe", IVF_NPROBE))
        self._faiss = index
        return index

    @property
    def backend(self) -> str:
        """How :meth:`query` searches: ``faiss-flat``, ``faiss-ivf`` or ``exact`` (no faiss,
        or the FAISS file is older than the database)."""
        index = self._load_faiss()
        if index is None:
            return "exact"
        return (
            "faiss-ivf"
            if "IVF" in type(faiss.downcast_index(index.index)).__name__
            else ("faiss-flat")
        )

    def query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores (Q, k'), row ids (Q, k')) of L2-normalised query vectors.

        An approximate (IVF) index can find fewer than ``k`` vectors for a query: those slots
        have id -1 (score -inf); columns that are empty for every query are dropped.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = self._load_faiss()
        if index is not None:
            scores, ids = index.search(vectors, min(k, index.ntotal))
            scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
            keep = (ids >= 0).any(axis=0)
            return scores[:, keep], ids[:, keep]
        ids, matrix = self.embeddings()
        if not len(ids):
            return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
        sim = torch.from_numpy(vectors) @ torch.from_numpy(matrix).t()
        top = sim.topk(min(k, len(ids)), dim=1)
        return top.values.numpy(), ids[top.indices.numpy()]


def _build_faiss(vecs: np.ndarray, ids: np.ndarray, exact_max: int):
    n, dim = vecs.shape
    if n <= exact_max:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        index.add_with_ids(vecs, ids)
        return index, "flat", {}
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vecs)
    index = faiss.IndexIDMap2(ivf)
    index.add_with_ids(vecs, ids)
    nprobe = min(nlist, IVF_NPROBE)
    return index, "ivf", {"nlist": nlist, "nprobe": nprobe}


# ------------------------------------------------------------------------------- building
def _plan(index: VideoIndex, paths: list[Path], model: str, retry_failed: bool, report):
    known = {r["path"]: r for r in index.rows()}
    todo: list[tuple[Path, os.stat_result]] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError as exc:
            report.failed.append((str(path), f"cannot read: {exc.strerror or exc}"))
            index._record(path, os.stat_result((0,) * 10), model, status="failed", error=str(exc))
            continue
        row = known.get(str(path))
        same = (
            row is not None
            and row["size"] == stat.st_size
            and row["mtime_ns"] == stat.st_mtime_ns
            and row["model_id"] == model
        )
        if same and row["status"] == "ok":
            report.skipped += 1
        elif same and not retry_failed:
            report.previously_failed += 1
        else:
            todo.append((path, stat))
    return todo


def _embed_batches(
    adapter: ModelAdapter, todo: list[tuple[Path, os.stat_result]], batch_size: int, workers: int
) -> Iterator[list[tuple[int, torch.Tensor | None, dict[str, Any], str | None]]]:
    data = _ClipFiles(adapter, [p for p, _ in todo])
    loader = DataLoader(
        data,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    yield from loader


def build_index(
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    model: str | Path | ModelAdapter,
    *,
    batch_size: int = 16,
    workers: int = 2,
    exact_max: int = EXACT_MAX,
    retry_failed: bool = False,
    prune: bool = True,
    video_root: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Index (or update the index of) a video collection.

    Args:
        source: folder, annotation file (see :func:`collect_sources`) or a list of video files.
        out: the index folder (created if needed).
        model: a checkpoint folder or an already loaded :class:`ModelAdapter`.
        batch_size: clips embedded per forward pass (and committed per transaction).
        workers: DataLoader processes decoding videos (0: in this process).
        exact_max: largest collection indexed exactly (see :data:`EXACT_MAX`).
        retry_failed: re-try files that failed before even if unchanged.
        prune: drop rows of files that no longer exist.
        video_root: folder an annotation file's paths are relative to.
        progress: ``progress(done, total)`` after every batch.

    Raises:
        ValueError: the model has no contrastive embedding, or the index belongs to another
            model.
    """
    start = time.perf_counter()
    adapter = model if isinstance(model, ModelAdapter) else load_adapter(model)
    if not adapter.searchable:
        raise ValueError(
            f"'{adapter.folder}': a {adapter.family} model has no contrastive video embedding"
        )
    if isinstance(source, (str, Path)):
        paths = collect_sources(source, video_root)
    else:
        paths = [Path(p).resolve() for p in source]
    report = IndexReport(total=len(paths))
    with VideoIndex.create(out, adapter) as index:
        with index.conn:
            todo = _plan(index, paths, adapter.model_id, retry_failed, report)
            if prune:
                gone = [r["id"] for r in index.rows() if not Path(r["path"]).exists()]
                index.conn.executemany("DELETE FROM videos WHERE id = ?", [(i,) for i in gone])
                report.removed = len(gone)
        done = 0
        if progress:
            progress(0, len(todo))
        for items in _embed_batches(adapter, todo, batch_size, workers):
            good = [it for it in items if it[1] is not None]
            vectors = adapter.encode_videos(torch.stack([it[1] for it in good])) if good else None
            with index.conn:  # one transaction per batch: the resume point
                if vectors is not None and "dim" not in index.meta:
                    index.conn.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(vectors.shape[1]),)
                    )
                for (pos, _, info, _), vec in zip(good, vectors if good else [], strict=True):
                    path, stat = todo[pos]
                    blob = vec.numpy().astype(np.float32).tobytes()
                    index._record(path, stat, adapter.model_id, status="ok", embedding=blob, **info)
                for pos, _, _, error in (it for it in items if it[1] is None):
                    path, stat = todo[pos]
                    index._record(path, stat, adapter.model_id, status="failed", error=error)
                    report.failed.append((str(path), error))
            report.embedded += len(good)
            done += len(items)
            if progress:
                progress(done, len(todo))
        report.kind = index.write_vectors(exact_max)
        report.vectors = len(index.rows("ok"))
    report.seconds = time.perf_counter() - start
    return report


# ------------------------------------------------------------------------------- searching
def search(
    index: str | Path | VideoIndex,
    query: str,
    k: int = 10,
    *,
    rerank: bool = False,
    model: str | Path | ModelAdapter | None = None,
) -> list[SearchHit]:
    """Rank the indexed clips for a sentence.

    Args:
        index: index folder or open :class:`VideoIndex`.
        query: the sentence.
        k: results returned.
        rerank: re-score the top ``k`` with the model's matching head (ITM) and order by it;
            each clip is decoded again.
        model: checkpoint folder or adapter; default: the folder recorded in the index.

    Raises:
        ValueError: ``model`` is not the model the index was built with.
    """
    own = not isinstance(index, VideoIndex)
    idx = VideoIndex.open(index) if own else index
    try:
        meta = idx.meta
        if model is None:
            model = meta["model_dir"]
        adapter = model if isinstance(model, ModelAdapter) else load_adapter(model)
        if adapter.model_id != meta.get("model_id"):
            raise ValueError(
                f"'{idx.folder}': built with model {meta.get('model_id')}, but "
                f"'{adapter.folder}' is {adapter.model_id}"
            )
        text = adapter.encode_texts([query]).numpy()
        scores, ids = idx.query(text, k)
        rows = idx.rows_by_id(ids[0].tolist())
        hits = [
            SearchHit(
                rank=i + 1,
                path=rows[int(rid)]["path"],
                score=float(s),
                duration=rows[int(rid)]["duration"],
                num_frames=rows[int(rid)]["num_frames"],
            )
            for i, (s, rid) in enumerate(zip(scores[0], ids[0], strict=True))
            if int(rid) in rows
        ]
    finally:
        if own:
            idx.close()
    return rerank_hits(adapter, query, hits) if rerank else hits


def rerank_hits(adapter: ModelAdapter, query: str, hits: list[SearchHit]) -> list[SearchHit]:
    """Re-order ``hits`` by the matching-head score of (``query``, clip); clips that no longer
    decode keep ``match_score=None`` and go last."""
    scored: list[tuple[float, SearchHit]] = []
    for hit in hits:
        try:
            clip = adapter.load_clip(hit.path)
        except VideoDecodeError:
            scored.append((-math.inf, hit))
            continue
        value = float(adapter.match_scores(query, clip.unsqueeze(0))[0])
        scored.append((value, SearchHit(**{**hit.to_dict(), "match_score": value})))
    scored.sort(key=lambda t: -t[0])
    return [SearchHit(**{**h.to_dict(), "rank": i + 1}) for i, (_, h) in enumerate(scored)]
