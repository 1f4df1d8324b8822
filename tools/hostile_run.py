#!/usr/bin/env python3
"""A hostile run over every ``dasr`` subcommand: bad files, bad numbers, outputs onto inputs.

Builds hostile fixtures in a temporary folder (broken, truncated, empty and huge-header images,
odd names, a symbolic-link loop, foreign/empty/NaN stores, a malicious pickle, absolute and
escaping lists, folders where files are expected, a full disk), runs each case as a
subprocess (``--weights random``, tiny images) and checks:

* no traceback on stderr, and the exit code the README promises (0 done, 2 refused);
* a refusal is one line, ``dasr: error: ...``;
* every input file is unchanged (SHA-256 of every fixture before and after each case, except
  the outputs the case is meant to write);
* nothing silently substituted (an explicit request that cannot be honoured is refused).

Usage::

    python tools/hostile_run.py [--quick] [--only NAME,...] [--out reports/robustness/hostile-run.md]

Writes a Markdown report (one row per case) and exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(r"^dasr( [\w-]+)*: error: ")
REFUSED = (2,)
DONE = (0,)
QUICK = ("merge-into-its-input", "search-foreign-index", "whiten-out-is-index", "reproduce-config-folder",
         "search-store-of-no-image", "merge-images-a-group", "detect-figure-without-extension",
         "extract-empty-images-argument",
         "search-pca-folder", "extract-parts-is-a-file")


@dataclass
class Case:
    """One command run: what it is called, its arguments and what it must give."""

    name: str
    argv: list[str]
    rc: tuple[int, ...] = REFUSED
    writes: tuple[str, ...] = ()       # fixture paths (relative) the case may create or change
    stderr_has: str = ""               # a text the refusal must contain
    timeout: int = 300
    result: dict = field(default_factory=dict)


def _image(path: Path, size=(48, 40), seed=0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)


def _store_like(path: Path, **datasets) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "dasr-region-store"
        f.attrs["format_version"] = 1
        for key, value in datasets.items():
            if key.startswith("attr_"):
                f.attrs[key[5:]] = value
            else:
                f[key] = value


def build_fixtures(tmp: Path) -> None:
    """The hostile files; ``db.h5`` (a valid store of ``imgs``) is made by the first case."""
    imgs = tmp / "imgs"
    imgs.mkdir()
    for i, name in enumerate(["a.jpg", "b.png", "c.jpg"]):
        _image(imgs / name, seed=i)
    good = (imgs / "a.jpg").read_bytes()
    (imgs / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (imgs / "zero.png").write_bytes(b"")
    (imgs / "page.jpg").write_bytes(b"<!doctype html><html><body>404</body></html>")
    # A PNG header claiming 30000 x 30000 pixels: refused from the header, never decoded.
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    (imgs / "huge-header.png").write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
                                           + struct.pack(">I", zlib.crc32(chunk)))
    _image(imgs / "odd name ünï\tcode.jpg", seed=7)
    _image(imgs / "bad.jpg", seed=8)
    os.rename(os.fsencode(imgs / "bad.jpg"), os.fsencode(imgs) + b"/bad-\xff-utf8.jpg")
    os.symlink("no-such-target.jpg", imgs / "broken-link.jpg")
    os.symlink(".", imgs / "loop")
    os.mkfifo(imgs / "fifo.jpg")
    (tmp / "dir.h5").mkdir()
    (tmp / "dir.npz").mkdir()
    (tmp / "dir.json").mkdir()
    (tmp / "cfgdir.toml").mkdir()
    (tmp / "empty.h5").write_bytes(b"")
    (tmp / "notes.txt").write_text("not a weights file\n")
    (tmp / "notes.weights.h5").write_text("not HDF5 either\n")
    _store_like(tmp / "foreign.h5")  # the format attributes, nothing else
    with h5py.File(tmp / "alien.h5", "w") as f:
        f["data"] = np.arange(3)
    _store_like(tmp / "wrongtypes.h5", images=np.arange(3.0), orders=np.zeros(3), sizes=np.zeros((3, 2)),
                offsets=np.zeros(4), region_image=np.zeros(0), attr_config="{}", attr_root="/")
    _store_like(tmp / "emptyconfig.h5", attr_config="", attr_root="/")
    _store_like(tmp / "listconfig.h5", attr_config="[1, 2]", attr_root="/")
    (tmp / "empty.npz").write_bytes(b"")
    np.savez(tmp / "pickled.npz", mean=np.array([object()], dtype=object))

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'PWNED'}",))

    (tmp / "gnd_evil.pkl").write_bytes(pickle.dumps(Boom()))
    (tmp / "list-outside.txt").write_text("imgs/a.jpg\n/etc/passwd\n")
    (tmp / "list-escape.txt").write_text("imgs/a.jpg\n../../etc/passwd\n")
    (tmp / "list-abs.txt").write_text(f"{tmp.resolve()}/imgs/a.jpg\n{tmp.resolve()}/imgs/b.png\n")
    (tmp / "parts-file.h5.parts").write_text("a file where a folder is expected\n")
    for name, text in {"methods5.toml": 'name = "x"\nmethods = 5\n', "name5.toml": "name = 5\n",
                       "escape.toml": 'name = "../../escaped"\n', "empty.toml": "",
                       "broken.toml": "name = [unclosed\n"}.items():
        (tmp / name).write_text(text)


def stores_from_db(tmp: Path) -> None:
    """Damaged copies of the valid store ``db.h5`` (made by the first case)."""
    import json
    import shutil

    for name, change in {
        "listconfig-full.h5": lambda f: f.attrs.__setitem__("config", "[1, 2]"),
        "badvalues.h5": lambda f: f.attrs.__setitem__(
            "config", json.dumps(dict(json.loads(f.attrs["config"]), max_side="big", backbone=5))),
        "nan.h5": lambda f: f["regions/features"].__setitem__(0, np.nan),
        "noidentity.h5": lambda f: (f.__delitem__("file_sizes"), f.__delitem__("file_sha256")),
        # Layouts the writer never makes: a dataset where it writes a group, and the other way round.
        "regions-dataset.h5": lambda f: (f.__delitem__("regions"), f.__setitem__("regions", np.zeros(3))),
        "images-group.h5": lambda f: (f.__delitem__("images"), f.create_group("images")),
    }.items():
        shutil.copyfile(tmp / "db.h5", tmp / name)
        with h5py.File(tmp / name, "a") as f:
            change(f)
    # A store of no image (a shard that received none), made by the store's own writer.
    from dasr.store import RegionStore, StoreWriter

    db = RegionStore.open(tmp / "db.h5")
    with StoreWriter(tmp / "noimages.h5", db.config, db.root):
        pass


def cases(tmp: Path) -> list[Case]:
    """Every case; ``{tmp}`` paths are absolute."""
    t = str(tmp)
    w = ["--weights", "random", "--max-side", "64"]
    q = ["--query", f"{t}/imgs/a.jpg", "--box", "2,2,40,30", "--weights", "random"]
    return [
        Case("extract-hostile-folder", ["extract", f"{t}/imgs", "--out", f"{t}/db.h5", *w], DONE,
             writes=("db.h5", "db.h5.skipped.tsv", "db.h5.lock")),
        Case("extract-again-is-resumed", ["extract", f"{t}/imgs", "--out", f"{t}/db.h5", *w], DONE,
             writes=("db.h5", "db.h5.skipped.tsv", "db.h5.lock")),
        Case("extract-absolute-list", ["extract", f"{t}/list-abs.txt", "--out", f"{t}/abs.h5", *w], DONE,
             writes=("abs.h5", "abs.h5.lock")),
        Case("extract-out-is-an-image", ["extract", f"{t}/imgs", "--out", f"{t}/imgs/a.jpg", *w]),
        Case("extract-out-is-a-folder", ["extract", f"{t}/imgs", "--out", f"{t}/dir.h5", *w]),
        Case("extract-parts-is-a-file", ["extract", f"{t}/imgs", "--out", f"{t}/parts-file.h5", *w]),
        Case("extract-list-outside-root", ["extract", f"{t}/list-outside.txt", "--out", f"{t}/x.h5", *w],
             stderr_has="outside the root"),
        Case("extract-list-escapes-root", ["extract", f"{t}/list-escape.txt", "--out", f"{t}/x.h5", *w],
             stderr_has="leaves the root"),
        Case("extract-missing-collection", ["extract", f"{t}/nothing-here", "--out", f"{t}/x.h5", *w]),
        Case("extract-weights-not-hdf5", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5",
                                          "--weights", f"{t}/notes.weights.h5", "--max-side", "64"]),
        Case("extract-weights-missing", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5",
                                         "--weights", f"{t}/no-such.weights.h5", "--max-side", "64"]),
        Case("extract-weights-folder", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5",
                                        "--weights", f"{t}/dir.h5", "--max-side", "64"]),
        Case("extract-tau-nan", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5", "--tau", "nan", *w]),
        Case("extract-max-seeds-0", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5", "--max-seeds", "0", *w]),
        Case("extract-max-side-negative", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5", "--weights", "random",
                                           "--max-side", "-3"]),
        Case("extract-fixed-box-nan", ["extract", f"{t}/imgs", "--out", f"{t}/x.h5", "--method", "fixed-box",
                                       "--fixed-box-side", "nan", *w]),
        Case("extract-full-disk", ["extract", f"{t}/imgs", "--out", f"{t}/full/db.h5", *w],
             stderr_has="no space left"),
        Case("merge-into-its-input", ["merge", f"{t}/db.h5", "--out", f"{t}/db.h5"]),
        Case("merge-foreign", ["merge", f"{t}/foreign.h5", "--out", f"{t}/m.h5"]),
        Case("merge-empty-file", ["merge", f"{t}/empty.h5", "--out", f"{t}/m.h5"]),
        Case("merge-out-folder", ["merge", f"{t}/db.h5", "--out", f"{t}/dir.h5"]),
        Case("whiten-out-is-index", ["whiten", "--index", f"{t}/db.h5", "--learn-from", f"{t}/abs.h5",
                                     "--out", f"{t}/db.h5"]),
        Case("whiten-out-folder", ["whiten", "--index", f"{t}/db.h5", "--learn-from", f"{t}/abs.h5",
                                   "--out", f"{t}/dir.npz"]),
        Case("whiten-from-foreign", ["whiten", "--index", f"{t}/db.h5", "--learn-from", f"{t}/alien.h5",
                                     "--out", f"{t}/w.npz"]),
        Case("search-empty-index", ["search", "--index", f"{t}/empty.h5", *q]),
        Case("search-foreign-index", ["search", "--index", f"{t}/foreign.h5", *q]),
        Case("search-alien-hdf5", ["search", "--index", f"{t}/alien.h5", *q]),
        Case("search-wrong-types", ["search", "--index", f"{t}/wrongtypes.h5", *q]),
        Case("search-empty-config", ["search", "--index", f"{t}/emptyconfig.h5", *q]),
        Case("search-list-config", ["search", "--index", f"{t}/listconfig.h5", *q]),
        Case("search-list-config-full", ["search", "--index", f"{t}/listconfig-full.h5", *q],
             stderr_has="not a JSON object"),
        Case("search-config-values-of-wrong-types", ["search", "--index", f"{t}/badvalues.h5", "--pca", "none", *q]),
        Case("search-nan-store", ["search", "--index", f"{t}/nan.h5", "--pca", "none", *q], stderr_has="non-finite"),
        Case("search-store-without-identity", ["search", "--index", f"{t}/noidentity.h5", "--pca", "none", *q,
                                               "--json"], DONE),
        Case("search-store-of-no-image", ["search", "--index", f"{t}/noimages.h5", "--pca", "none", *q],
             stderr_has="holds no image"),
        Case("search-regions-not-a-group", ["search", "--index", f"{t}/regions-dataset.h5", "--pca", "none", *q],
             stderr_has="not a DASR region store"),
        Case("merge-images-a-group", ["merge", f"{t}/images-group.h5", "--out", f"{t}/m.h5"],
             stderr_has="not a DASR region store"),
        Case("whiten-from-store-of-no-image", ["whiten", "--index", f"{t}/db.h5", "--learn-from",
                                                f"{t}/noimages.h5", "--out", f"{t}/w.npz"], stderr_has="holds no image"),
        Case("index-build-store-of-no-image", ["index", "build", f"{t}/noimages.h5", "--pca", "none", "--out",
                                                f"{t}/i.npz"], stderr_has="holds no image"),
        Case("detect-figure-without-extension", ["detect", f"{t}/imgs/a.jpg", *w, "--figure", f"{t}/fig"]),
        Case("detect-figure-unknown-extension", ["detect", f"{t}/imgs/a.jpg", *w, "--figure", f"{t}/fig.xyz"]),
        Case("search-figure-without-extension", ["search", "--index", f"{t}/db.h5", "--pca", "none", *q,
                                                  "--figure", f"{t}/fig."]),
        Case("extract-empty-images-argument", ["extract", "", "--out", f"{t}/x.h5", *w], stderr_has="empty"),
        Case("detect-empty-json-argument", ["detect", f"{t}/imgs/a.jpg", *w, "--json", ""], stderr_has="empty"),
        Case("search-index-folder", ["search", "--index", f"{t}/dir.h5", *q]),
        Case("search-pca-folder", ["search", "--index", f"{t}/db.h5", "--pca", f"{t}/dir.npz", *q],
             stderr_has="is a folder"),
        Case("search-pca-empty", ["search", "--index", f"{t}/db.h5", "--pca", f"{t}/empty.npz", *q]),
        Case("search-pca-pickle", ["search", "--index", f"{t}/db.h5", "--pca", f"{t}/pickled.npz", *q],
             stderr_has=""),
        Case("search-box-nan", ["search", "--index", f"{t}/db.h5", "--pca", "none", "--query", f"{t}/imgs/a.jpg",
                                "--box", "nan,0,10,10", "--weights", "random"]),
        Case("search-top-negative", ["search", "--index", f"{t}/db.h5", "--pca", "none", *q, "--top", "-5"]),
        Case("search-query-truncated", ["search", "--index", f"{t}/db.h5", "--pca", "none", "--query",
                                        f"{t}/imgs/truncated.jpg", "--box", "1,1,5,5", "--weights", "random"]),
        Case("search-query-folder", ["search", "--index", f"{t}/db.h5", "--pca", "none", "--query", f"{t}/imgs",
                                     "--box", "1,1,5,5", "--weights", "random"]),
        Case("search-figure-is-query", ["search", "--index", f"{t}/db.h5", "--pca", "none", *q,
                                        "--figure", f"{t}/imgs/a.jpg"]),
        Case("search-ok-json", ["search", "--index", f"{t}/db.h5", "--pca", "none", *q, "--json"], DONE),
        Case("detect-json-is-image", ["detect", f"{t}/imgs/a.jpg", *w, "--json", f"{t}/imgs/a.jpg"]),
        Case("detect-json-folder", ["detect", f"{t}/imgs/a.jpg", *w, "--json", f"{t}/dir.json"]),
        Case("detect-figure-is-its-image", ["detect", f"{t}/imgs/b.png", *w, "--figure", f"{t}/imgs/b.png"]),
        Case("detect-figure-over-a-store", ["detect", f"{t}/imgs/a.jpg", *w, "--figure", f"{t}/abs.h5"]),
        Case("detect-truncated", ["detect", f"{t}/imgs/truncated.jpg", *w]),
        Case("detect-full-disk", ["detect", f"{t}/imgs/a.jpg", *w, "--json", f"{t}/full/r.json"],
             stderr_has="no space left"),
        Case("classify-not-an-image", ["classify", "--weights", "random", f"{t}/imgs/page.jpg"]),
        Case("classify-weights-not-hdf5", ["classify", "--weights", f"{t}/notes.txt", f"{t}/imgs/a.jpg"]),
        Case("weights-not-hdf5", ["weights", "--weights", f"{t}/notes.weights.h5"]),
        Case("index-build-foreign", ["index", "build", f"{t}/foreign.h5"]),
        Case("index-build-out-folder", ["index", "build", f"{t}/db.h5", "--pca", "none", "--out", f"{t}/dir.npz"]),
        Case("index-build-out-is-store", ["index", "build", f"{t}/db.h5", "--pca", "none", "--out", f"{t}/db.h5"]),
        Case("index-build-nan-store", ["index", "build", f"{t}/nan.h5", "--pca", "none", "--out", f"{t}/i.npz"]),
        Case("evaluate-unknown-benchmark", ["evaluate", "--benchmark", "no-such-benchmark", *w,
                                            "--work", f"{t}/work"]),
        Case("evaluate-subsample-negative", ["evaluate", "--benchmark", "instance-track", "--subsample", "-3", *w]),
        Case("serve-foreign-index", ["serve", "--index", f"{t}/foreign.h5", "--port", "0"], timeout=400),
        Case("demo-out-is-a-file", ["demo", "--root", str(REPO / "data" / "demo"), "--out", f"{t}/notes.txt", *w],
             timeout=400),
        Case("reproduce-config-folder", ["reproduce", f"{t}/cfgdir.toml"]),
        Case("reproduce-methods-5", ["reproduce", f"{t}/methods5.toml"], stderr_has="methods"),
        Case("reproduce-name-5", ["reproduce", f"{t}/name5.toml"], stderr_has="name"),
        Case("reproduce-name-escapes", ["reproduce", f"{t}/escape.toml"]),
        Case("reproduce-empty-config", ["reproduce", f"{t}/empty.toml"]),
        Case("reproduce-broken-toml", ["reproduce", f"{t}/broken.toml"]),
        Case("reproduce-missing-config", ["reproduce", f"{t}/nothing.toml"]),
    ]


def _snapshot(tmp: Path) -> dict[str, str]:
    """SHA-256 of every regular file under the fixtures (symbolic links and FIFOs skipped)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(tmp):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)) and d != "full"]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                out[os.path.relpath(path, tmp)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _fill_disk(full: Path) -> bool:
    """Mount a tiny tmpfs at ``full`` and fill it; False when mounting is not allowed here."""
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        return False
    fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: the disk is full, as wanted
        pass
    finally:
        os.close(fd)
    return True


def run_case(case: Case, tmp: Path) -> Case:
    """Runs one case's ``dasr`` command, fills ``case.result`` (see :func:`run_case_command`)."""
    return run_case_command(case, tmp, [sys.executable, "-m", "dasr.cli", *case.argv])


def run_case_command(case: Case, tmp: Path, command: list[str]) -> Case:
    """Runs ``command`` in ``tmp`` for ``case``, fills ``case.result`` with the findings (empty: none).

    Args:
        case: what the command must give.
        tmp: the fixture folder (the working directory, and what must stay unchanged).
        command: the command line.

    Returns:
        ``case``, with ``result`` = rc, wall seconds, findings and the last message.
    """
    before = _snapshot(tmp)
    env = dict(os.environ, PYTHONUNBUFFERED="1", DASR_DEBUG="0")
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, cwd=tmp,
                              env=env, timeout=case.timeout, stdin=subprocess.DEVNULL)
        rc, err = proc.returncode, proc.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        rc, err = None, (e.stderr or b"").decode(errors="replace")
    wall = time.perf_counter() - start
    after = _snapshot(tmp)
    findings = []
    if rc is None:
        findings.append(f"no answer after {case.timeout} s")
    elif rc not in case.rc:
        findings.append(f"exit {rc}, expected {'/'.join(map(str, case.rc))}")
    if "Traceback" in err:
        findings.append("traceback on stderr")
    # ``dasr: error: ...`` from the commands, ``dasr <command>: error: ...`` from argparse.
    lines = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    if rc == 2 and len(lines) != 1:
        findings.append(f"{len(lines)} 'dasr: error:' lines")
    if rc == 2 and case.stderr_has and case.stderr_has not in err:
        findings.append(f"message lacks {case.stderr_has!r}")
    changed = sorted(k for k in before if after.get(k) != before[k] and k not in case.writes)
    if changed:
        findings.append(f"inputs changed: {', '.join(changed)}")
    if (tmp / "PWNED").exists():
        findings.append("a pickle ran code")
    case.result = {"rc": rc, "wall": wall, "findings": findings,
                   "message": (lines[-1] if lines else (err.strip().splitlines() or [""])[-1])[:160]}
    return case


def main(argv: list[str] | None = None) -> int:
    """Runs the cases, writes the report.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        0 without findings, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)} (for the test)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports/robustness/hostile-run.md"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dasr-hostile-") as name:
        tmp = Path(name)
        build_fixtures(tmp)
        full_disk = False
        try:
            full_disk = _fill_disk(tmp / "full")
            todo = cases(tmp)
            wanted = set(args.only.split(",")) if args.only else set(QUICK) if args.quick else None
            if wanted is not None:
                todo = [c for c in todo if c.name in wanted or c.name == "extract-hostile-folder"]
            if not full_disk:
                todo = [c for c in todo if "full-disk" not in c.name]
            # The valid stores first: later cases read them.
            for case in [c for c in todo if c.name.startswith("extract-") and c.rc == DONE]:
                run_case(case, tmp)
                print(f"{case.name}: {case.result}", flush=True)
            if (tmp / "db.h5").exists():
                stores_from_db(tmp)
            rest = [c for c in todo if not c.result]
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                for case in pool.map(lambda c: run_case(c, tmp), rest):
                    print(f"{case.name}: {case.result}", flush=True)
        finally:
            if full_disk:
                subprocess.run(["umount", "-l", str(tmp / "full")], check=False)  # lazy: never left mounted
    found = [c for c in todo if c.result["findings"]]
    rows = [f"| {c.name} | `dasr {' '.join(a.replace(str(tmp), '$T') for a in c.argv)}` | {c.result['rc']} | "
            f"{'; '.join(c.result['findings']) or 'ok'} | {c.result['message'].replace(str(tmp), '$T').replace('|', '/')} |"
            for c in todo]
    text = "\n".join([
        "# Hostile run over every dasr subcommand",
        "",
        f"Written by `python tools/hostile_run.py{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}`: {len(todo)} cases, {len(found)} with findings"
        f"{'' if full_disk else ' (full-disk cases left out: no tmpfs could be mounted)'}. `$T` is the"
        " temporary fixture folder. Each case must exit with the code the README promises (0 or 2),"
        " print no traceback, refuse on exactly one `dasr: error:` line (`dasr <command>: error:` for"
        " argparse's own checks, after its usage line), and leave every fixture unchanged"
        " (SHA-256 before and after; the refusals run two or three at a time after the"
        " extractions, so a change seen then is reported for each case running at the time).",
        "",
        "| case | command | exit | findings | last message |",
        "|---|---|---:|---|---|",
        *rows,
    ]) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"{len(todo)} cases, {len(found)} with findings; report: {args.out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
