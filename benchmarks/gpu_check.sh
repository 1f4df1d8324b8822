#!/usr/bin/env bash
# GPU check of `dasr extract` on JAX (benchmarks/gpu_check.py), for a lent GPU machine.
#
#   bash benchmarks/gpu_check.sh OUT_DIR                 # on the GPU machine: the bundle in .gpu/
#   bash benchmarks/gpu_check.sh OUT_DIR --smoke --bundle DIR   # this CPU, JAX, a small bundle
#
# What to bring to the GPU machine: this repository's tracked files plus the ignored folder .gpu/
# that `make gpu-bundle` fills (under 64 MiB in all):
#   .gpu/wheels/   keras, namex, optree for CPython 3.12 manylinux: all that machine lacks for
#                  Keras 3 on its JAX (it has jax with CUDA, OpenCV, Pillow, h5py, tqdm, numpy)
#   .gpu/resnet50_float16.weights.h5   the cached ImageNet weights in float16 (~43 MiB)
#   .gpu/images/   the instance-track JPEG files as they are (real, mixed sizes)
#   .gpu/reference.npz, manifest.json  the CPU float32 (TensorFlow) boxes of DASR and DASR*
# Then the one command there: `bash benchmarks/gpu_check.sh /tmp/out` (prints one table, writes
# /tmp/out/gpu-check.json row by row). It installs the wheels into /tmp/dasr-gpu-site (pip
# --no-index --no-deps --target: nothing else is touched), checks that `import keras` runs on jax,
# and runs the check: bfloat16 then float32 at 8 images per step, then 4 and 16 in bfloat16, with
# a limit of GPU_CHECK_TIMEOUT seconds (default 290).
#
# --smoke: on a machine without a GPU (JAX_PLATFORMS=cpu), with the interpreter's own keras (the
# bundle's wheels are for CPython 3.12), on a small bundle made by
#   python benchmarks/gpu_check.py bundle DIR --n 3 --max-side 64 --weights random
# It proves the script end to end; its speeds say nothing about a GPU.
#
# Environment: PYTHON (default python3, or .venv/bin/python when it exists), GPU_CHECK_TIMEOUT,
# GPU_CHECK_ARGS (extra arguments for `gpu_check.py check`, e.g. "--more-steps 32 --dtypes bfloat16").
set -euo pipefail

die() { echo "gpu_check: ERROR: $1" >&2; exit "${2:-1}"; }
say() { echo "gpu_check: $*"; }

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
[[ $# -ge 1 && $1 != -* ]] || die "usage: bash benchmarks/gpu_check.sh OUT_DIR [--smoke] [--bundle DIR]"
OUT_DIR=$1
shift
SMOKE=0
BUNDLE=.gpu
while [[ $# -gt 0 ]]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --bundle) BUNDLE=${2:?--bundle needs a folder}; shift ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
DEFAULT_PY=python3
[[ -x .venv/bin/python && $SMOKE == 1 ]] && DEFAULT_PY=.venv/bin/python
PY=${PYTHON:-$DEFAULT_PY}
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (set PYTHON=...)"
[[ -d $BUNDLE/images ]] || die "$BUNDLE/images is missing: make the bundle with \`make gpu-bundle\` (or gpu_check.py bundle) and bring it along"
for f in manifest.json reference.npz resnet50_float16.weights.h5; do
  [[ -f $BUNDLE/$f ]] || die "$BUNDLE/$f is missing: make the bundle with \`make gpu-bundle\` (or gpu_check.py bundle) and bring it along"
done
mkdir -p "$OUT_DIR"
say "repo $REPO, bundle $BUNDLE, python $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

export KERAS_BACKEND=jax
SITE=/tmp/dasr-gpu-site
if [[ $SMOKE == 1 ]]; then
  export JAX_PLATFORMS=cpu
  say "SMOKE: JAX on the CPU, the interpreter's own keras (wheels not installed)"
  export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
else
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L || say "WARNING: nvidia-smi -L failed"; fi
  compgen -G "$BUNDLE/wheels/*.whl" >/dev/null || die "no wheels in $BUNDLE/wheels (make gpu-bundle)"
  "$PY" -m pip install -q --no-index --no-deps --target "$SITE" --upgrade "$BUNDLE"/wheels/*.whl \
    || die "pip install --no-index --no-deps --target $SITE failed (the wheels are for CPython 3.12 manylinux x86_64)"
  export PYTHONPATH="$SITE:$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
fi
# JAX compiles once per image shape and chunk size; a rerun on the same machine reuses them.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/dasr-jax-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0.5}

"$PY" - <<'EOF' || die "import keras on jax failed (see above)" 3
import jax, keras
assert keras.backend.backend() == "jax", keras.backend.backend()
print(f"gpu_check: keras {keras.__version__} on jax {jax.__version__}, devices {jax.devices()}")
EOF

ARGS=(check "$BUNDLE" "$OUT_DIR")
# Smoke: 2 images per step, so that the 3 bundled images make a full step and a padded one.
[[ $SMOKE == 1 ]] && ARGS+=(--smoke --images-per-step 2 --more-steps 3 --matmul-n 256 --matmul-chain 1)
# shellcheck disable=SC2206
ARGS+=(${GPU_CHECK_ARGS:-})
say "running: $PY benchmarks/gpu_check.py ${ARGS[*]}"
set +e
PYTHONUNBUFFERED=1 timeout --signal=TERM --kill-after=15 "${GPU_CHECK_TIMEOUT:-290}" \
  "$PY" benchmarks/gpu_check.py "${ARGS[@]}" 2>&1 | tee "$OUT_DIR/gpu-check.log"
RC=${PIPESTATUS[0]}
set -e
[[ $RC -eq 124 || $RC -eq 137 ]] && die "the check ran past ${GPU_CHECK_TIMEOUT:-290} s and was stopped" 7
[[ $RC -eq 0 ]] || die "gpu_check.py exited with $RC (log: $OUT_DIR/gpu-check.log)" "$RC"
say "done: $OUT_DIR/gpu-check.json, $OUT_DIR/gpu-check.log"
