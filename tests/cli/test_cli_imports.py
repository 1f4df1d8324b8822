"""What each command loads: the network's frameworks only where a command runs the network.

Each case runs ``dasr.cli.main`` in a child process and reports the heavy modules it loaded.
``merge``, ``whiten``, ``index build``, ``--help`` and ``--version`` never run the network, so
TensorFlow and Keras stay out of the process (start-up in a fraction of a second, no 1.7 GB peak).
On JAX (a GPU machine has no TensorFlow), ``extract`` runs with TensorFlow made unimportable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import refuse_imports, subprocess_env, write_collection

# After the finder that refuses the blocked modules: dasr.cli.main(argv), then the heavy modules loaded.
CHILD = textwrap.dedent("""
    import json
    from dasr.cli import main
    try:
        rc = main(json.loads(sys.argv[1]))
    except SystemExit as e:  # --help, --version
        rc = e.code
    heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "jax", "matplotlib"})
    print("HEAVY " + json.dumps({"rc": rc, "loaded": heavy}))
""")


def run_child(argv, home, blocked=(), backend=None) -> dict:
    env = subprocess_env(home)
    if backend:
        env.update(KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", refuse_imports(blocked) + CHILD, json.dumps(list(map(str, argv)))],
                          capture_output=True, text=True, env=env, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("HEAVY ")]
    assert line, f"child failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(line[-1][len("HEAVY "):])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, dasr_cli):
    work = tmp_path_factory.mktemp("imports")
    write_collection(work / "a", seed=3, count=3)
    write_collection(work / "b", seed=4, count=3)
    for name in ("a", "b"):
        rc, _, err = dasr_cli("extract", work / name, "--out", work / f"{name}.h5", "--weights", "random",
                              "--max-side", "64", "--method", "gap", "--quiet")
        assert rc == 0, err
    return work


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["merge", "--help"]])
def test_help_and_version_load_no_framework(argv, tmp_path):
    got = run_child(argv, tmp_path, blocked=("tensorflow", "keras", "jax"))
    assert got == {"rc": 0, "loaded": []}


def test_store_commands_load_no_framework(small_store, tmp_path):
    """merge, whiten and index build with TensorFlow, Keras, JAX and matplotlib unimportable."""
    w = small_store
    blocked = ("tensorflow", "keras", "jax", "matplotlib")
    assert run_child(["merge", w / "a.h5", "--out", tmp_path / "m.h5"], tmp_path, blocked) == {"rc": 0, "loaded": []}
    whiten = ["whiten", "--index", w / "a.h5", "--learn-from", w / "b.h5", "--pca-dim", "2",
              "--out", tmp_path / "w.npz"]
    assert run_child(whiten, tmp_path, blocked) == {"rc": 0, "loaded": []}
    assert (tmp_path / "w.npz").exists()
    build = ["index", "build", w / "a.h5", "--pca", "none", "--kind", "pq", "--out", tmp_path / "i.npz"]
    got = run_child(build, tmp_path, blocked)
    assert got["loaded"] == [] and got["rc"] in (0, 2)  # 2: too few regions for a PQ code, said in one line


def test_extract_on_jax_without_tensorflow(tmp_path):
    images = tmp_path / "images"
    write_collection(images, seed=5, count=2)
    out = tmp_path / "jax.h5"
    got = run_child(["--backend", "jax", "extract", images, "--out", out, "--weights", "random", "--max-side", "64",
                     "--method", "dasr-star", "--quiet"], tmp_path, blocked=("tensorflow",), backend="jax")
    assert got["rc"] == 0 and "tensorflow" not in got["loaded"] and {"jax", "keras"} <= set(got["loaded"])
    from dasr.store import RegionStore

    store = RegionStore.open(out)
    assert store.config["backend"] == "jax" and len(store.images) == 2 and store.offsets[-1] >= 2


def test_every_option_help_shows_its_default():
    """--method, --pooling, --backbone, --top, ... : a reader sees what is used when the option is left out."""
    import argparse

    from dasr.cli.parser import build_parser

    def parsers(p):
        yield p
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    missing = []
    for p in parsers(build_parser()):
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                helped = " ".join(p._get_formatter()._expand_help(action).split())
                if str(action.default) not in helped or helped not in text:
                    missing.append(f"{p.prog} {action.option_strings[0]}")
    assert not missing, missing
