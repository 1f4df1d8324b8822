#!/usr/bin/env bash
# GPU check of the dasr benchmark, for a lent GPU machine (run from anywhere; it cds to the repo).
#
#   bash benchmarks/gpu_check.sh             # writes ${OUT:-results/bench}/bench-gpu.{json,md,log}
#
# Needs an NVIDIA GPU and TensorFlow with CUDA. It first checks for the GPU (nvidia-smi -L or
# /dev/nvidia*) and stops, installing nothing, where there is none. Online, it installs
# "tensorflow[and-cuda]==2.21.*" into $PYTHON when TensorFlow is missing or sees no GPU; offline it
# says so and exits non-zero. Installs this package (pip install -e . --no-deps) when `import dasr`
# fails. Meant to finish in under 5 minutes. GPU_CHECK_INSTALL=0 forbids every pip install.
#
# Environment (all optional):
#   PYTHON          interpreter (default python3); pip installs go into its environment
#   GPU_CHECK_INSTALL  1 (default): pip install what is missing when online; 0: never install
#   OUT             output folder (default results/bench)
#   BENCH_IMAGES    --images for bench.py (folder or list file). Default: the shared
#                   instance-track set, when shared/data/instance-track is found in the repo or a
#                   parent folder. Make a carryable copy with
#                   `python3 benchmarks/bench.py --export-images DIR --n 50`.
#   BENCH_WEIGHTS   --weights for bench.py: imagenet | PATH.weights.h5 | random. Default: imagenet
#                   when the dasr weight cache holds them, else random (timing only, with a warning).
#   BENCH_N         timed images (default 50)
#   BENCH_BUDGET    seconds after which no new image is started (default 150)
#   BENCH_TIMEOUT   hard limit of the benchmark run in seconds (default 270)
#   BENCH_ARGS      extra arguments for bench.py
#   GPU_CHECK_ALLOW_CPU=1  testing aid only: run the rest on a machine without a GPU (implies
#                   GPU_CHECK_INSTALL=0)
set -euo pipefail

die() { echo "gpu_check: ERROR: $1" >&2; exit "${2:-1}"; }
say() { echo "gpu_check: $*"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-results/bench}
TF_SPEC='tensorflow[and-cuda]==2.21.*'
mkdir -p "$OUT_DIR"
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (set PYTHON=...)"
say "repo $REPO, python $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

online() {
  timeout 10 "$PY" - <<'EOF' >/dev/null 2>&1
import urllib.request
urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=8)
EOF
}

# --- the GPU itself: without one, stop before installing anything
ALLOW_CPU=${GPU_CHECK_ALLOW_CPU:-0}
[[ $ALLOW_CPU == 1 ]] && GPU_CHECK_INSTALL=0
if [[ $ALLOW_CPU == 1 ]]; then
  say "WARNING: GPU_CHECK_ALLOW_CPU=1: no GPU required, nothing installed (testing the script only)"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  nvidia-smi || say "WARNING: nvidia-smi failed"
elif compgen -G "/dev/nvidia[0-9]*" >/dev/null; then
  say "WARNING: nvidia-smi missing or failing, but /dev/nvidia* exists"
else
  die "no NVIDIA GPU here (nvidia-smi -L fails and there is no /dev/nvidia*): this check is for a lent GPU machine. Nothing was installed." 2
fi

# --- TensorFlow with CUDA
tf_gpus() {
  "$PY" -c 'import os; os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2"); import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))' 2>/dev/null | tail -n 1
}
IS_ONLINE=
if [[ ${GPU_CHECK_INSTALL:-1} == 1 ]] && online; then IS_ONLINE=1; fi
if ! "$PY" -c "import tensorflow" >/dev/null 2>&1; then
  if [[ -n $IS_ONLINE ]]; then
    say "TensorFlow is missing: pip install \"$TF_SPEC\""
    "$PY" -m pip install -q "$TF_SPEC" || die "pip install \"$TF_SPEC\" failed"
  else
    die "TensorFlow with CUDA is required (pip install \"$TF_SPEC\"), but \`$PY -c 'import tensorflow'\` fails and this machine is offline: install it (or carry its wheels) and rerun." 3
  fi
fi
NGPU=$(tf_gpus || true)
if [[ ${NGPU:-0} -lt 1 ]]; then
  if [[ -n $IS_ONLINE ]]; then
    say "TensorFlow sees no GPU (CPU-only build?): pip install \"$TF_SPEC\""
    "$PY" -m pip install -q "$TF_SPEC" || die "pip install \"$TF_SPEC\" failed"
    NGPU=$(tf_gpus || true)
  fi
  [[ ${NGPU:-0} -ge 1 || $ALLOW_CPU == 1 ]] || die "TensorFlow with CUDA is required: TensorFlow imports but sees no GPU (a CPU-only build such as tensorflow-cpu, or a CUDA/driver mismatch). Install \"$TF_SPEC\" and rerun." 4
fi
say "TensorFlow $("$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null | tail -n 1) sees $NGPU GPU(s)"

# --- the other dependencies and the package
MISSING=$("$PY" - <<'EOF'
import importlib
mods = {"keras": "keras>=3.15,<4", "numpy": "numpy>=2.0", "cv2": "opencv-python-headless>=4.8",
        "PIL": "pillow>=10", "h5py": "h5py<3.15", "faiss": "faiss-cpu>=1.8"}
missing = []
for mod, spec in mods.items():
    try:
        importlib.import_module(mod)
    except Exception:
        missing.append(spec)
print(" ".join(missing))
EOF
)
if [[ -n $MISSING ]]; then
  if [[ -n $IS_ONLINE ]]; then
    say "installing missing dependencies: $MISSING"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $MISSING || die "pip install $MISSING failed"
  elif [[ $MISSING == "faiss-cpu>=1.8" ]]; then
    say "WARNING: faiss is missing and the machine is offline: the faiss searches will be skipped"
  else
    die "missing Python packages and offline: $MISSING (install them or carry their wheels)" 5
  fi
fi
if ! "$PY" -c "import dasr" >/dev/null 2>&1; then
  if [[ ${GPU_CHECK_INSTALL:-1} != 1 ]]; then
    say "dasr is not importable and installs are off: using PYTHONPATH=$REPO/src"
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
  else
  say "dasr is not importable: pip install -e . --no-deps"
  if ! "$PY" -m pip install -q -e . --no-deps; then
    say "pip install -e . failed (offline build isolation?); retrying with --no-build-isolation"
    "$PY" -m pip install -q -e . --no-deps --no-build-isolation \
      || { say "WARNING: could not install dasr; using PYTHONPATH=$REPO/src"; export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"; }
  fi
  fi
  "$PY" -c "import dasr" || die "dasr still does not import"
fi

# --- inputs: images and weights
ARGS=(--n "${BENCH_N:-50}" --max-side 512 --time-budget "${BENCH_BUDGET:-150}" --out "$OUT_DIR/bench-gpu.json")
if [[ -n ${BENCH_IMAGES:-} ]]; then
  [[ -e $BENCH_IMAGES ]] || die "BENCH_IMAGES=$BENCH_IMAGES does not exist"
  ARGS+=(--images "$BENCH_IMAGES")
else
  IMG_ROOT=$("$PY" -c 'from dasr.datasets import default_root; print(default_root("instance-track"))')
  [[ -d $IMG_ROOT/images ]] || die "no images: $IMG_ROOT/images is missing (the shared folder does not travel to this machine). Copy them with \`python3 benchmarks/bench.py --export-images DIR --n 50\` on a machine that has them, bring DIR along and set BENCH_IMAGES=DIR." 6
fi
WEIGHTS=${BENCH_WEIGHTS:-}
if [[ -z $WEIGHTS ]]; then
  if "$PY" -c 'import sys; from dasr.weights import cached_weights_path; sys.exit(0 if cached_weights_path("resnet50").is_file() else 1)'; then
    WEIGHTS=imagenet
  else
    WEIGHTS=random
    say "WARNING: no cached ImageNet weights (\$DASR_HOME/weights, default ~/.cache/dasr/weights): using RANDOM weights. Times per seed and FLOP rates stay valid; seeds, regions and IoUs do not. Set BENCH_WEIGHTS=PATH.weights.h5 for real ones."
  fi
fi
ARGS+=(--weights "$WEIGHTS")
# shellcheck disable=SC2206
ARGS+=(${BENCH_ARGS:-})

# --- the benchmark
say "running: $PY benchmarks/bench.py ${ARGS[*]}"
set +e
PYTHONUNBUFFERED=1 timeout --signal=TERM --kill-after=15 "${BENCH_TIMEOUT:-270}" \
  "$PY" benchmarks/bench.py "${ARGS[@]}" 2>&1 | tee "$OUT_DIR/bench-gpu.log"
RC=${PIPESTATUS[0]}
set -e
if [[ $RC -eq 124 || $RC -eq 137 ]]; then
  die "the benchmark ran past ${BENCH_TIMEOUT:-270} s and was stopped; partial results (sections finished) are in $OUT_DIR/bench-gpu.json" 7
elif [[ $RC -ne 0 ]]; then
  die "bench.py exited with $RC (log: $OUT_DIR/bench-gpu.log)" "$RC"
fi
"$PY" - "$OUT_DIR/bench-gpu.json" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
errors = data.get("errors", [])
print(f"gpu_check: {data['meta'].get('device')}: {len(errors)} section error(s)")
for e in errors:
    print(f"gpu_check:   {e['section']}: {e['error']}")
EOF
say "done: $OUT_DIR/bench-gpu.json, $OUT_DIR/bench-gpu.md, $OUT_DIR/bench-gpu.log"
