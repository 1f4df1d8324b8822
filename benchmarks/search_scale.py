"""Region search at the paper's scale, by simulation.

Queries and true neighbours are REAL: the DASR* region features of two shared collections, each
from its finished store (found under ``--stores``, or named):

* instance-track (the 1-in-``--subsample`` database and its 28 query features): its queries give
  recall@100 and the Fig. 8 curve, mAP@50 with the distractors;
* paris-landmarks (the 1-in-``--paris-subsample`` database and its 24 whole-image queries): more
  real regions in the database and more queries for recall@100 (Paris images are never relevant
  to an instance-track query, nor the other way round).

The database is those real regions plus N synthetic distractor regions drawn from a diagonal
Gaussian mixture fitted to ALL the real regions in a PCA-reduced space, written chunk by chunk
to disk as float16, grouped into images of 19 regions, never relevant: the library's
:mod:`dasr.experiments.simulated_distractors` builds it; this script measures the index on it.

The search space: l2-normalised raw features (the table-1 run's ``pca=none``), centred and
projected on their first ``--dim`` principal components (fitted on the real regions),
l2-normalised again.  Everything (real regions, queries, distractors) lives in that space.

Per N: build the compressed index (:func:`dasr.search.region_index.build_from_rows`, chunked
from disk), its bytes per region (serialized, and RSS growth when loaded), query latency (batch
of 1, faiss on ``--threads`` threads: the index's candidates, then exact re-ranking on the
float16 rows and the best region per image through :func:`dasr.search.ranking.rank_images`),
recall@100 of the re-ranked regions against exact search (computed chunk by chunk from disk),
and mAP@50 of instance-track with the distractors (exact and indexed: the Fig. 8 curve).

Results merge into ``--out``/results.json (one entry per N), results.md and fig8.png.
Exit code 1 only on a broken pipeline (never on timing or a missed target).

  make reproduce-table1 BENCH=instance-track SETS="--set subsample=12 --set pca=none"   # the stores
  dasr evaluate --benchmark paris-landmarks --method dasr-star --subsample 10 --pca none
  python benchmarks/search_scale.py --sizes 50000            # development size
  nice -n 10 python benchmarks/search_scale.py --sizes 1000000,7014819 --work /work/scale-work
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from dasr.errors import InputError
from dasr.experiments.simulated_distractors import (RealSet, RowFile, database_offsets, fit_mixture, fit_space,
                                                    load_real, map_at, prefix_offsets, sample_chunk, write_database)
from dasr.features.whitening import l2_normalize
from dasr.search.ann import plan_index
from dasr.search.ranking import rank_images, top_regions
from dasr.search.region_index import build_from_rows, candidate_rows, m_for_bytes, rank_candidates, rerank

TARGETS = {"recall@100": 0.95, "bytes_per_region": 64, "latency_ms": 50, "build_rss_gb": 16}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


_LOAD_RSS = """
import sys, faiss
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")) * 1024
before = rss()
index = faiss.read_index(sys.argv[1])
print(rss() - before)
"""


def loaded_index_bytes(path: Path) -> int:
    """RSS growth of a FRESH process when it loads the index (in this one, freed heap would be reused)."""
    done = subprocess.run([sys.executable, "-c", _LOAD_RSS, str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- one size
def run_size(n: int, args, real_y: np.ndarray, queries: np.ndarray, real_offsets, g, sets: list[RealSet]) -> dict:
    work = Path(args.work)
    path = work / f"db-d{args.dim}-k{args.components}-s{args.seed}-n{n}.npy"
    t = time.time()
    if not path.is_file():
        log(f"N={n:,}: writing {path}")
        write_database(path, real_y, g, n, args.seed, log)
    gen_s = time.time() - t
    db = RowFile(path)
    if db.shape != (len(real_y) + n, args.dim) or not np.array_equal(db.rows(np.arange(len(real_y))),
                                                                    real_y.astype(np.float16).astype(np.float32)):
        raise SystemExit(f"{path}: not this run's database (shape {db.shape}); delete it")
    total = db.shape[0]
    offsets = database_offsets(real_offsets, n)

    # --- build
    nlist = args.nlist or int(2 ** round(np.log2(np.sqrt(total))))
    m = m_for_bytes(args.dim, args.kind, args.bytes_per_region)
    plan = plan_index(total, args.dim, args.kind, m=m, nlist=nlist, nprobe=args.nprobe,
                      train_size=min(total, max(39 * max(nlist, 256), 64 * nlist)), opq_niter=args.opq_niter)
    if plan.kind != args.kind:  # too few vectors to train the codebooks: the plan falls back on exact search
        raise SystemExit(f"search_scale: N={n:,}: {plan.note}; this benchmark measures the compressed index, "
                         f"give a larger --sizes")
    log(f"N={n:,}: building {plan.factory} (train {plan.train_size:,}, nprobe {plan.nprobe})")
    ipath = work / f"index-{args.kind}-n{n}.faiss"
    built_by = args.previous.get(str(n)) if args.reuse_index and ipath.is_file() else None
    if args.reuse_index and (built_by is None or built_by["factory"] != plan.factory
                             or built_by["train_size"] != plan.train_size or built_by["opq_niter"] != plan.opq_niter):
        raise SystemExit(f"--reuse-index: no results.json entry for N={n} that built {ipath} as {plan.factory}")
    if built_by is not None:
        log(f"N={n:,}: reusing {ipath} (built by: {built_by['command']})")
        build_s, build_peak, rss0 = built_by["build_s"], built_by["build_peak_rss_gb"], built_by["rss_before_build_mb"]
        index = faiss.read_index(str(ipath))
    else:
        rss0 = rss_mb()
        t = time.time()
        last = [time.time()]

        def progress(done: int) -> None:
            if time.time() - last[0] > 60:
                last[0] = time.time()
                log(f"  added {done:,}/{total:,}")

        faiss.omp_set_num_threads(args.build_threads)
        index = build_from_rows(db.range, db.sample, total, args.dim, plan, args.seed, progress)
        build_s = time.time() - t
        build_peak = peak_rss_gb()
        faiss.write_index(index, str(ipath))
    if index.ntotal != total:
        raise SystemExit(f"index holds {index.ntotal} vectors, not {total}")
    serialized = ipath.stat().st_size
    del index
    loaded_ram = loaded_index_bytes(ipath)
    index = faiss.read_index(str(ipath))
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = plan.nprobe
    list_sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    counted = int(list_sizes.sum()) * (ivf.code_size + 8)
    log(f"N={n:,}: built in {build_s:.0f} s, {serialized / total:.1f} B/region serialized, "
        f"{loaded_ram / total:.1f} B/region RSS after load")

    # --- exact search, chunk by chunk from disk
    t = time.time()
    ex_ids, ex_scores = top_regions(queries, db.mm, 100)
    ex_rank = rank_images(queries, db.mm, offsets, None, top=100)
    exact_s = time.time() - t
    exact_map = map_at(sets[0], [r.order for r in ex_rank])
    curve = {}
    for p in args.curve:
        if 0 < p < n:
            rk = rank_images(queries, db.mm[:len(real_y) + p], prefix_offsets(offsets, len(real_y) + p), None, top=100)
            curve[str(p)] = map_at(sets[0], [r.order for r in rk])
    log(f"N={n:,}: exact search {exact_s:.0f} s, mAP@50 {exact_map:.3f}")

    # --- self-check: the exact top regions as candidates give the exact image ranking
    chk = rank_candidates(queries[:4], ex_ids[:4], db.rows, offsets, None, top=10)
    for r, e in zip(chk, ex_rank[:4]):
        if not np.array_equal(r.order[:5], e.order[:5]):
            raise SystemExit("re-ranking the exact top regions does not give the exact ranking: broken pipeline")

    # --- indexed search, batch of 1
    faiss.omp_set_num_threads(args.threads)
    lat, lat_faiss, orders, ids = [], [], [], []
    for i in range(-1, len(queries)):  # query -1: warm-up of the first one
        q = queries[max(i, 0)][None]
        t0 = time.perf_counter()
        cand = candidate_rows(index, q, args.candidates)
        t1 = time.perf_counter()
        ranking = rank_candidates(q, cand, db.rows, offsets, None, top=100)[0]
        t2 = time.perf_counter()
        if i >= 0:
            lat.append((t2 - t0) * 1000)
            lat_faiss.append((t1 - t0) * 1000)
            orders.append(ranking.order)
            ids.append(rerank(q, cand, db.rows, 100)[0][0])
    ids = np.stack(ids)
    hits = np.array([len(set(a[a >= 0].tolist()) & set(e.tolist())) for a, e in zip(ids, ex_ids)]) / 100
    recall = float(np.mean(hits))
    first = np.cumsum([0] + [len(r.bench.queries) for r in sets])
    recall_by = {r.bench.name: round(float(np.mean(hits[a:b])), 4) for r, a, b in zip(sets, first[:-1], first[1:])}
    if not 0.5 <= recall <= 1.0:
        raise SystemExit(f"recall@100 {recall:.3f}: broken pipeline")
    index_map = map_at(sets[0], orders)
    res = {
        "n_distractors": n, "regions": total, "images": len(offsets) - 1, "factory": plan.factory,
        "nlist": plan.nlist, "nprobe": plan.nprobe, "m": plan.m, "train_size": plan.train_size,
        "opq_niter": plan.opq_niter, "candidates": args.candidates, "build_threads": args.build_threads,
        "generate_s": round(gen_s, 1), "build_s": round(build_s, 1), "build_peak_rss_gb": round(build_peak, 2),
        "rss_before_build_mb": round(rss0, 0),
        "index_reused_from": built_by["command"] if built_by is not None else None,
        "index_bytes_per_region_serialized": round(serialized / total, 2),
        "index_bytes_per_region_ram": round(loaded_ram / total, 2),
        "index_bytes_per_region_counted_codes_ids": round(counted / total, 2),
        "latency_ms_median": round(float(np.median(lat)), 2), "latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
        "faiss_ms_median": round(float(np.median(lat_faiss)), 2), "faiss_ms_p95": round(float(np.percentile(lat_faiss, 95)), 2),
        "query_threads": args.threads, "load_average_at_queries": [round(v, 2) for v in os.getloadavg()],
        "parallel_mode": int(ivf.parallel_mode),
        "recall@100": round(recall, 4), "recall@100_by_collection": recall_by,
        "map@50_exact": round(exact_map, 4), "map@50_index": round(index_map, 4), "exact_search_s": round(exact_s, 1),
        "exact_curve_map@50": {k: round(v, 4) for k, v in curve.items()},
    }
    res["targets_met"] = {
        "recall@100>=0.95": res["recall@100"] >= TARGETS["recall@100"],
        "bytes_per_region<=64": res["index_bytes_per_region_ram"] <= 64 and res["index_bytes_per_region_serialized"] <= 64,
        "latency_median<50ms": res["latency_ms_median"] < 50, "latency_p95<50ms": res["latency_ms_p95"] < 50,
        "build_peak_rss<=16GB": res["build_peak_rss_gb"] <= 16,
    }
    log(f"N={n:,}: {json.dumps(res)}")
    return res


# ----------------------------------------------------------------------------- report
def write_report(out: Path, report: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    s = report["setup"]
    sizes = sorted(report["sizes"].values(), key=lambda r: r["n_distractors"])
    lines = ["# Region search at scale (simulated distractors)", "",
             f"- last command: `{s['command']}` (each row's own command is in results.json; run on {s['host_note']})",
             "- real data (DASR* stores): " + "; ".join(
                 f"{c['name']}: {c['queries']} queries, {c['regions']} regions of {c['images']} images (1 in {c['subsample']})"
                 for c in s["collections"]) + f"; database: the {s['real_regions']} real regions + N synthetic "
             "distractors; recall@100 over every query, mAP@50 over instance-track's (Paris images are never "
             "relevant to them)",
             f"- space: l2 raw features (no whitening), PCA to {s['dim']} dims fitted on the real regions "
             f"(variance kept {s['pca_variance_kept']:.3f}), l2; float16 on disk",
             f"- distractors: diagonal Gaussian mixture, K={s['components']}, fitted on the real regions' PCA "
             f"coordinates; held-out (20% of images) log-likelihood per dim: mixture "
             f"{s['fit']['gmm_held_out_loglik_per_dim']:.3f} vs one Gaussian {s['fit']['one_gaussian_held_out_loglik_per_dim']:.3f} "
             f"(train {s['fit']['gmm_train_loglik_per_dim']:.3f}); query -> best region cosine: real regions "
             f"{s['similarity']['query_best_real_mean']:.3f}, real regions of non-relevant images "
             f"{s['similarity']['query_best_real_negative_mean']:.3f}, as many synthetic {s['similarity']['query_best_synthetic_mean']:.3f}",
             f"- mAP@50 without distractors: full 2048-d space {s['map@50_full_space']:.4f}, {s['dim']}-d space {s['map@50_pca_space']:.4f}",
             "", "| distractors | regions | index | build s | peak RSS GB | B/region (RAM) | B/region (file) | "
             "latency ms median | p95 | of which faiss ms | load | recall@100 | mAP@50 exact | mAP@50 index |",
             "|" + "---|" * 14]
    for r in sizes:
        threads = "lists over threads" if r.get("parallel_mode") == 1 else "1 thread per query"
        lines.append(f"| {r['n_distractors']:,} | {r['regions']:,} | {r['factory']} nprobe={r['nprobe']} c={r['candidates']} "
                     f"({threads}) | "
                     f"{r['build_s']:.0f} | {r['build_peak_rss_gb']:.2f} | {r['index_bytes_per_region_ram']:.1f} | "
                     f"{r['index_bytes_per_region_serialized']:.1f} | {r['latency_ms_median']:.1f} | {r['latency_ms_p95']:.1f} | "
                     f"{r['faiss_ms_median']:.1f} | {r['load_average_at_queries'][0]:.1f} | "
                     f"{r['recall@100']:.3f} | {r['map@50_exact']:.3f} | {r['map@50_index']:.3f} |")
    if any(r.get("index_reused_from") for r in sizes):
        lines += ["", "Rows of one N share its index: those run with `--reuse-index` (another nprobe or candidate "
                  "count) query the index the first run built, and carry that run's build columns."]
    lines += ["", "Latency: each query's faiss search, then the exact re-ranking of its candidates (float16 rows read "
              "from the memory-mapped database) and the best region per image, on 2 cores; `load` is the 1-minute "
              "load average when the queries ran (other work on the machine; all three in results.json). "
              "\"1 thread per query\": faiss's default for a batch (parallel over queries), which leaves one "
              "query on one thread; \"lists over threads\": `dasr.search.region_index.candidate_rows`, which "
              "splits one query's inverted lists over the threads (IVF `parallel_mode` 1)."]
    lines += ["", "Targets (at 7,014,819 distractors): recall@100 >= 0.95, <= 64 B/region, < 50 ms/query on 2 threads, "
              "build peak RSS <= 16 GB.", ""]
    for r in sizes:
        met = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["targets_met"].items())
        lines.append(f"- N={r['n_distractors']:,}, nprobe={r['nprobe']}, c={r['candidates']}: {met}")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    pts = {0: s["map@50_pca_space"]}
    for r in sizes:
        pts.update({int(k): v for k, v in r["exact_curve_map@50"].items()})
        pts[r["n_distractors"]] = r["map@50_exact"]
    xs = sorted(pts)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([max(x, 1e3) for x in xs], [pts[x] for x in xs], "o-", label="exact search")
    ax.plot([r["n_distractors"] for r in sizes], [r["map@50_index"] for r in sizes], "s--", label="IVF-PQ + exact re-rank")
    ax.set_xscale("log")
    ax.set_xlabel("synthetic distractor regions (0 drawn at 1e3)")
    ax.set_ylabel("instance-track mAP@50")
    ax.set_title("Fig. 8 (simulated): mAP@50 vs distractors")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fig8.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stores", default="results/stores",
                   help="where the evaluation keeps its stores (the DASR* stores are found there)")
    p.add_argument("--store", default="", help="the instance-track DASR* store folder (default: found in --stores)")
    p.add_argument("--data", default="", help="the instance-track folder (default: the loader's)")
    p.add_argument("--subsample", type=int, default=12, help="instance-track: every n-th database image")
    p.add_argument("--paris-store", default="", help="the paris-landmarks DASR* store folder (default: found)")
    p.add_argument("--paris-data", default="", help="the paris-landmarks folder (default: the loader's)")
    p.add_argument("--paris-subsample", type=int, default=10,
                   help="paris-landmarks: every n-th database image (0: instance-track alone)")
    p.add_argument("--sizes", default="50000", help="comma-separated distractor counts")
    p.add_argument("--work", default="/work/scale-work", help="where the float16 databases and indexes go (large)")
    p.add_argument("--out", default="reports/search-scale")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--components", type=int, default=16)
    p.add_argument("--kind", default="opq-ivfpq", choices=["ivfpq", "opq-ivfpq"])
    p.add_argument("--bytes-per-region", type=int, default=64)
    p.add_argument("--nlist", type=int, default=None, help="default: the power of two nearest sqrt(regions)")
    p.add_argument("--nprobe", type=int, default=256)
    p.add_argument("--opq-niter", type=int, default=10)
    p.add_argument("--candidates", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2, help="faiss threads while querying")
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--curve", default="10000,100000,1000000", help="prefix sizes of the exact mAP curve")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse-index", action="store_true",
                   help="query the index an earlier run built for this N (its build numbers are carried over); "
                        "the entry is keyed N/c<candidates>/p<nprobe>")
    p.add_argument("--report-only", action="store_true",
                   help="fit the model again and re-render the report from results.json (no size is run)")
    args = p.parse_args(argv)
    args.curve = [int(v) for v in args.curve.split(",") if v]
    Path(args.work).mkdir(parents=True, exist_ok=True)

    stores = Path(args.stores)
    sets = [load_real("instance-track", args.data, args.subsample, stores, args.store, log)]
    if args.paris_subsample:
        paris = load_real("paris-landmarks", args.paris_data, args.paris_subsample, stores, args.paris_store, log)
        paris.first_image = len(sets[0].store)  # its images follow instance-track's
        sets.append(paris)
    x = l2_normalize(np.concatenate([r.store.arrays["features"].astype(np.float32) for r in sets]), axis=1)
    parts, rows = [np.zeros(1, np.int64)], 0
    for r in sets:  # the collections' images one after the other, then the distractors
        parts.append(r.store.offsets[1:] + rows)
        rows += int(r.store.offsets[-1])
    offsets = np.concatenate(parts)
    owner = np.concatenate([r.store.region_image + r.first_image for r in sets])
    q_full = l2_normalize(np.concatenate([r.queries for r in sets]), axis=1)
    full_map = map_at(sets[0], [r.order for r in rank_images(q_full, x, offsets, None, top=100)])
    mean, proj, kept = fit_space(x, args.dim)
    y_raw = (x - mean) @ proj
    real_y, queries = l2_normalize(y_raw, axis=1), l2_normalize((q_full - mean) @ proj, axis=1)
    pca_map = map_at(sets[0], [r.order for r in rank_images(queries, real_y, offsets, None, top=100)])
    log(f"real: {len(x)} regions, {len(queries)} queries; instance-track mAP@50 full {full_map:.4f}, "
        f"{args.dim}-d {pca_map:.4f} (variance kept {kept:.3f})")
    g, fit = fit_mixture(y_raw, owner, args.components, args.seed)
    synth = sample_chunk(g, len(real_y), args.seed + 1000, 0)
    # The distractors stand for regions of images without the instance: compare them with the real
    # regions of each query's NON-relevant images (of either collection).
    neg_best = []
    for r in sets:
        for qq in r.bench.queries:
            positive_images = r.first_image + np.flatnonzero(np.isin(r.to_bench, qq.positives))
            neg_best.append(real_y[~np.isin(owner, positive_images)])
    neg_best = [float((neg @ queries[i]).max()) for i, neg in enumerate(neg_best)]
    sim = {"query_best_real_mean": float((queries @ real_y.T).max(1).mean()),
           "query_best_real_negative_mean": float(np.mean(neg_best)),
           "query_best_synthetic_mean": float((queries @ synth.T).max(1).mean()),
           "region_pair_cosine_real_mean": float(np.mean(real_y @ real_y.T)),
           "region_pair_cosine_synthetic_mean": float(np.mean(synth @ synth.T))}
    log(f"mixture fit: {json.dumps(fit)}; similarity {json.dumps(sim)}")

    out = Path(args.out)
    setup = {"command": "python benchmarks/search_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
             "host_note": "2 shared CPU cores, faiss-cpu " + faiss.__version__,
             "queries": len(queries), "real_regions": len(x), "real_images": len(offsets) - 1,
             "collections": [{"name": r.bench.name, "store": os.fspath(r.store.path), "images": len(r.store),
                              "regions": int(r.store.offsets[-1]), "queries": len(r.bench.queries),
                              "subsample": sub} for r, sub in zip(sets, (args.subsample, args.paris_subsample))],
             "dim": args.dim, "components": args.components, "pca_variance_kept": kept, "fit": fit, "similarity": sim,
             "map@50_full_space": full_map, "map@50_pca_space": pca_map, "seed": args.seed}
    if args.report_only:
        report = json.loads((out / "results.json").read_text())
        if any(report["setup"].get(k) != setup[k] for k in ("dim", "components", "seed", "real_regions", "fit", "collections")):
            raise SystemExit(f"{out}/results.json was made with another model; run the sizes again")
        write_report(out, {**report, "setup": {**setup, "command": report["setup"]["command"]}})
        log(f"re-rendered {out}/results.md and fig8.png")
        return 0
    results = out / "results.json"
    args.previous = json.loads(results.read_text())["sizes"] if results.is_file() else {}
    for n in [int(v) for v in args.sizes.split(",")]:
        res = run_size(n, args, real_y, queries, offsets, g, sets)
        res["command"] = setup["command"]
        # Re-read just before writing: another size may have finished meanwhile (runs in parallel).
        report = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {"sizes": {}}
        old = report.get("setup", {})
        if old and any(old.get(k) != setup[k] for k in ("dim", "components", "seed", "real_regions", "fit", "collections")):
            report["sizes"] = {}  # another model: earlier sizes are not comparable
        report["setup"] = setup
        report["sizes"][f"{n}/c{args.candidates}/p{args.nprobe}" if args.reuse_index else str(n)] = res
        write_report(out, report)
    log(f"wrote {out}/results.md, results.json, fig8.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as e:  # a missing or mismatched store: one line, no traceback
        sys.exit(f"search_scale: {e}")
