"""Speed of the text-to-video search tools on CPU: indexing throughput and search latency.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/search_speed.py [--out DIR]
        [--sizes 10000,1000000] [--dim 32,256] [--queries 200] [--k 10] [--workers 2]

Everything goes through leanvl's own code paths (``leanvl.tools.index``), the ones the
``leanvl index`` / ``leanvl search`` commands use:

1. Indexing: ``leanvl data synth`` clips (``leanvl.data.synth.generate``), an untrained
   ``allinone_tiny`` saved with ``leanvl.save_model``, then :func:`build_index` (what
   ``leanvl index`` calls) twice on the videos folder: the first run embeds every file, the
   second finds them all unchanged (the resume path).
2. Search: for each size N and embedding width D, N random unit vectors are written as ``ok``
   rows into an index database (:meth:`VideoIndex.create`), and the FAISS file is written with
   :meth:`VideoIndex.write_vectors`, once with ``exact_max >= N`` (``faiss-flat``) and, when
   N is above :data:`EXACT_MAX`, once with the default (``faiss-ivf``, what ``leanvl index``
   builds at that size). Single queries go through :meth:`VideoIndex.query` on the re-opened
   folder; the ``exact`` backend (no faiss installed) is the same call with faiss hidden.
   Recall@k of IVF is measured against ``faiss-flat`` on random unit queries (a worst case:
   uniform data has no cluster structure) and on "near" queries (a stored vector plus noise,
   cosine ~0.9 to it, like a caption close to one clip). At the model's width the end-to-end
   :func:`search` (text encoder + FAISS + row lookup) is timed too.

Widths above ``--wide-max-dim`` are only run at sizes up to ``--wide-max-size``: IVF training
(k-means over ``4 * sqrt(N)`` lists) grows with D and takes minutes at 1M x 256 on 2 cores.
Prints a markdown table to stdout (docs/tools.md, section "Speed").
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import leanvl  # noqa: E402
import leanvl.tools.index as index_mod  # noqa: E402
from leanvl.data.synth import SynthConfig, generate  # noqa: E402
from leanvl.tools.adapters import load_adapter  # noqa: E402
from leanvl.tools.index import EXACT_MAX, VideoIndex, build_index, search  # noqa: E402


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load1() -> float:
    """1-minute load average."""
    return os.getloadavg()[0]


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@contextmanager
def without_faiss():
    """Make ``leanvl.tools.index`` behave as without faiss installed (exact fallback)."""
    saved = index_mod.faiss
    index_mod.faiss = None
    try:
        yield
    finally:
        index_mod.faiss = saved


# ------------------------------------------------------------------------------- indexing
def bench_indexing(work: Path, clips: int, size: int, frames: int, workers: int) -> dict:
    """Synth clips, untrained allinone_tiny, two :func:`build_index` runs."""
    start = time.perf_counter()
    cfg = SynthConfig(
        train=0, val=0, test=clips, frames=frames, size=size, workers=workers, preview=0
    )
    data = generate(work / "data", cfg, overwrite=True)
    synth_s = time.perf_counter() - start
    torch.manual_seed(0)
    model_dir = work / "model"
    leanvl.save_model(
        leanvl.create_model("allinone_tiny", num_frames=frames, image_size=size), model_dir
    )
    out = work / "clips.idx"
    first = build_index(data / "videos", out, model_dir, workers=workers)
    second = build_index(data / "videos", out, model_dir, workers=workers)
    return {"synth_s": synth_s, "first": first, "second": second, "model_dir": model_dir}


# ------------------------------------------------------------------------------- search
def fill_index(folder: Path, adapter, vecs: np.ndarray) -> None:
    """Write ``vecs`` as ``ok`` rows of a new index database (one transaction)."""
    with VideoIndex.create(folder, adapter) as idx, idx.conn:
        idx.conn.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(vecs.shape[1]),))
        now = time.time()
        idx.conn.executemany(
            "INSERT INTO videos (path, size, mtime_ns, status, duration, num_frames, model_id, "
            "embedding, indexed_at) VALUES (?, 0, 0, 'ok', 1.0, 8, ?, ?, ?)",
            (
                (f"/synthetic/{i:07d}.mp4", adapter.model_id, v.tobytes(), now)
                for i, v in enumerate(vecs)
            ),
        )


def time_queries(idx: VideoIndex, queries: np.ndarray, k: int) -> tuple[list[float], np.ndarray]:
    """Per-query seconds of :meth:`VideoIndex.query` (one vector at a time) and the ids."""
    idx.query(queries[:1], k)  # warm-up (loads the FAISS file)
    times, ids = [], []
    for q in queries:
        start = time.perf_counter()
        _, found = idx.query(q[None], k)
        times.append(time.perf_counter() - start)
        ids.append(found[0])
    return times, np.stack(ids)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k found."""
    k = truth.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)]))


def ms(times: list[float], q: float) -> float:
    """Quantile ``q`` of ``times`` in milliseconds."""
    return 1000 * float(np.quantile(times, q))


def bench_search(work: Path, adapter, n: int, dim: int, args) -> list[dict]:
    """Build and query every backend leanvl offers at ``n`` vectors of width ``dim``."""
    rng = np.random.default_rng(0)
    vecs = unit(rng.standard_normal((n, dim), dtype=np.float32))
    rand_q = unit(rng.standard_normal((args.queries, dim), dtype=np.float32))
    picks = rng.integers(0, n, args.queries)
    near_q = unit(vecs[picks] + 0.5 / np.sqrt(dim) * rng.standard_normal((args.queries, dim)))
    folder = work / f"vec_{n}_{dim}"
    start = time.perf_counter()
    fill_index(folder, adapter, vecs)
    fill_s = time.perf_counter() - start
    del vecs
    rows: list[dict] = []

    with VideoIndex.open(folder) as idx:  # faiss-flat: exact_max >= n
        start = time.perf_counter()
        kind = idx.write_vectors(exact_max=max(n, EXACT_MAX))
        build_s = time.perf_counter() - start
    with VideoIndex.open(folder) as idx:
        backend = idx.backend
        times, truth = time_queries(idx, rand_q, args.k)
        _, truth_near = time_queries(idx, near_q, args.k)
    rows.append(
        {"backend": backend, "kind": kind, "build_s": build_s, "times": times, "recall": 1.0}
    )
    rows[-1]["recall_near"] = 1.0

    with without_faiss(), VideoIndex.open(folder) as idx:  # exact fallback (no faiss)
        count = args.queries if n <= 100_000 else args.slow_queries
        times, found = time_queries(idx, rand_q[:count], args.k)
        rows.append(
            {
                "backend": idx.backend,
                "kind": "none",
                "build_s": 0.0,
                "times": times,
                "recall": recall(found, truth[:count]),
                "queries": count,
            }
        )

    if n > EXACT_MAX:  # what leanvl index builds at this size
        with VideoIndex.open(folder) as idx:
            start = time.perf_counter()
            kind = idx.write_vectors()
            build_s = time.perf_counter() - start
        manifest = (folder / "manifest.json").read_text()
        with VideoIndex.open(folder) as idx:
            backend = idx.backend
            times, found = time_queries(idx, rand_q, args.k)
            _, found_near = time_queries(idx, near_q, args.k)
        rows.append(
            {
                "backend": backend,
                "kind": kind,
                "build_s": build_s,
                "times": times,
                "recall": recall(found, truth),
                "recall_near": recall(found_near, truth_near),
                "manifest": manifest,
            }
        )

    if dim == args.model_dim:  # end to end, as `leanvl search` does it (default backend)
        count = args.queries if n <= 100_000 else args.slow_queries
        with VideoIndex.open(folder) as idx:
            search(idx, "a red star moves to the left", args.k, model=adapter)
            times = []
            for i in range(count):
                start = time.perf_counter()
                search(idx, f"a red star moves to the left {i}", args.k, model=adapter)
                times.append(time.perf_counter() - start)
            backend = idx.backend
        rows.append(
            {
                "backend": f"search() e2e ({backend})",
                "kind": "",
                "build_s": 0.0,
                "times": times,
                "queries": count,
            }
        )
    for row in rows:
        row.update(n=n, dim=dim, fill_s=fill_s)
        row.setdefault("queries", args.queries)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temp)")
    parser.add_argument("--sizes", default="10000,1000000", help="stored vectors, comma list")
    parser.add_argument("--dim", default="32,256", help="embedding widths, comma list")
    parser.add_argument("--wide-max-dim", type=int, default=64)
    parser.add_argument("--wide-max-size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--slow-queries", type=int, default=5, help="exact/e2e above 100k")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    load_before = load1()
    total_start = time.perf_counter()
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="leanvl-search-speed-")
        work = Path(tmp.name)
    else:
        work = args.out
        work.mkdir(parents=True, exist_ok=True)

    ix = bench_indexing(work, args.clips, args.size, args.frames, args.workers)
    adapter = load_adapter(ix["model_dir"])
    args.model_dim = int(adapter.encode_texts(["x"]).shape[1])
    rows: list[dict] = []
    for dim in (int(d) for d in args.dim.split(",")):
        for n in (int(s) for s in args.sizes.split(",")):
            if dim > args.wide_max_dim and n > args.wide_max_size:
                print(f"skipped N={n:,} D={dim} (above --wide-max-size for wide vectors)")
                continue
            rows += bench_search(work, adapter, n, dim, args)
    load_after = load1()

    first, second = ix["first"], ix["second"]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads), torch {torch.__version__}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")  # fmt: skip
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after; "
          f"total {time.perf_counter() - total_start:.0f} s")  # fmt: skip
    print()
    print("| indexing (`build_index`, allinone_tiny untrained) | files | embedded | seconds "
          "| videos/s |")  # fmt: skip
    print("|---|---|---|---|---|")
    print(f"| first run ({args.clips} clips {args.size}px x {args.frames} frames, "
          f"--workers {args.workers}) | {first.total} | {first.embedded} | "
          f"{first.seconds:.2f} | {first.embedded / first.seconds:.1f} |")  # fmt: skip
    print(f"| second run (all unchanged, resume path) | {second.total} | {second.embedded} | "
          f"{second.seconds:.2f} | - |")  # fmt: skip
    print(f"(synth generation: {ix['synth_s']:.1f} s; index kind {first.kind}, "
          f"{first.vectors} vectors of width {args.model_dim})")  # fmt: skip
    print()
    print("| N | D | backend | build s | queries | median ms | p90 ms | recall@10 random "
          "| recall@10 near |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rec = f"{r['recall']:.3f}" if "recall" in r else "-"
        near = f"{r['recall_near']:.3f}" if "recall_near" in r else "-"
        build = f"{r['build_s']:.1f}" if r["build_s"] else "-"
        p50, p90 = ms(r["times"], 0.5), ms(r["times"], 0.9)
        print(f"| {r['n']:,} | {r['dim']} | {r['backend']} | {build} | {r['queries']} | "
              f"{p50:.2f} | {p90:.2f} | {rec} | {near} |")  # fmt: skip
    print()
    for r in rows:
        if "manifest" in r:
            print(f"IVF manifest at N={r['n']:,} D={r['dim']}: {' '.join(r['manifest'].split())}")
    fills = {(r["n"], r["dim"]): r["fill_s"] for r in rows}
    print("database fill (SQLite rows, not timed above): "
          + ", ".join(f"N={n:,} D={d}: {s:.1f} s" for (n, d), s in fills.items()))  # fmt: skip
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
