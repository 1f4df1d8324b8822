# Every target uses the virtual environment that `make install` creates in .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DASR := $(VENV)/bin/dasr
BENCH ?=
SET := $(if $(BENCH),--set bench=$(BENCH),)
SETS ?=

.PHONY: install demo test test-fast bench reproduce-table1 reproduce-table2 reproduce-table3 \
        ablation-layers ablation-nms localization fidelity silent-choices rmac-whitening baselines bfloat16 scalability figures gpu-bundle search-scale clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[test,ray]"
	touch $@

# The README's main job: weights, then DASR* vs a global baseline on the bundled demo data.
demo: install
	$(DASR) weights
	$(DASR) demo

# The whole suite, including the few tests marked `weights` (real ImageNet weights).
test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not weights and not slow"

# TensorFlow, then the same pipeline on JAX's CPU backend (side by side in results/bench/).
bench: install
	$(PY) benchmarks/bench.py $(BENCH_ARGS)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(PY) benchmarks/bench.py --out results/bench/bench-jax.json $(BENCH_ARGS)

# Region search at the paper's scale (simulated distractors; benchmarks/README.md). First the real
# DASR* stores and query features it starts from (reused when they exist: hours on a 2-core CPU
# the first time), then the float16 databases and indexes in SCALE_WORK (7M regions: ~7 GB); the
# report goes to reports/search-scale/.
SCALE_SIZES ?= 1000000,7014819
SCALE_WORK ?= results/search-scale-work
search-scale: install
	$(DASR) evaluate --benchmark instance-track --method dasr-star --subsample 12 --pca none
	$(DASR) evaluate --benchmark paris-landmarks --method dasr-star --subsample 10 --pca none
	nice -n 10 $(PY) benchmarks/search_scale.py --sizes $(SCALE_SIZES) --work $(SCALE_WORK)

reproduce-table1: install
	$(DASR) reproduce experiments/table1.toml $(SET) $(SETS)

reproduce-table2: install
	$(DASR) reproduce experiments/table2.toml $(SET) $(SETS)

reproduce-table3: install
	$(DASR) reproduce experiments/table3.toml $(SET) $(SETS)

ablation-layers: install
	$(DASR) reproduce experiments/ablation_layers.toml $(SET) $(SETS)

ablation-nms: install
	$(DASR) reproduce experiments/ablation_nms.toml $(SET) $(SETS)

localization: install
	$(DASR) reproduce experiments/localization.toml $(SET) $(SETS)

# The paper's rule vs the authors' released rule; BENCH=paris6k-subset for the official Paris6k lists.
fidelity: install
	$(DASR) reproduce experiments/fidelity.toml $(SET) $(SETS)

# R-MAC's own regional whitening (Tolias et al.), learned on each set's usual other collection, then
# the baselines as their authors define them (R-MAC so whitened, GeM global and as region pooling).
RMAC_WHITENING := results/rmac-whitening
DATA_ROOT = $$($(PY) -c 'from dasr.eval.datasets.common import default_root; print(default_root("$(1)"))')
.PHONY: rmac-whitening baselines
rmac-whitening: install
	mkdir -p $(RMAC_WHITENING)
	$(DASR) whiten-rmac $(call DATA_ROOT,paris-landmarks)/images --out $(RMAC_WHITENING)/paris-landmarks.npz
	$(DASR) whiten-rmac $(call DATA_ROOT,instance-track)/images --out $(RMAC_WHITENING)/instance-track.npz

baselines: install
	$(DASR) reproduce experiments/baselines.toml $(SET) $(SETS)

# The paper rule's silent choices (strided 1x1, residual Add, max pooling) side by side (real weights).
silent-choices: install
	$(DASR) reproduce experiments/silent_choices.toml $(SET) $(SETS)

# bfloat16 against float32 (DASR and DASR*, real weights): the measurement behind `--dtype auto`.
bfloat16: install
	$(DASR) reproduce experiments/bfloat16.toml $(SET) $(SETS)

scalability: install
	$(DASR) reproduce experiments/scalability.toml $(SET) $(SETS)

figures: install
	$(DASR) reproduce experiments/figures.toml $(SET) $(SETS)

# The GPU check's bundle (benchmarks/gpu_check.sh): wheels for the GPU machine's CPython 3.12,
# float16 weights, GPU_IMAGES instance-track JPEG files (the check resizes them to GPU_MAX_SIDE) and their CPU float32
# reference boxes, in the ignored folder $(GPU_BUNDLE) (under 64 MiB in all).
GPU_BUNDLE ?= .gpu
GPU_IMAGES ?= 50
GPU_MAX_SIDE ?= 512
GPU_WHEELS ?= keras==3.15.1 namex==0.1.0 optree==0.20.0
gpu-bundle: install
	rm -rf $(GPU_BUNDLE)/wheels
	$(VENV)/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d $(GPU_BUNDLE)/wheels $(GPU_WHEELS)
	$(PY) benchmarks/gpu_check.py bundle $(GPU_BUNDLE) --n $(GPU_IMAGES) --max-side $(GPU_MAX_SIDE)
	du -sh $(GPU_BUNDLE)

# The copy-paste benchmarks (dasr.eval.datasets.copy_paste): instance-track's instances pasted onto
# paris-landmarks scenes, hard and feathered, into $DASR_DATA/copy-paste{,-feathered}; then the
# instance-search report on both (no whitening: its usual source, paris-landmarks, is their scenes).
SEED ?= 0
.PHONY: copy-paste copy-paste-report
copy-paste: install
	$(PY) data/make_copy_paste.py --seed $(SEED)

copy-paste-report: install
	$(DASR) reproduce experiments/copy_paste.toml $(SET) $(SETS)

clean:
	rm -rf results .pytest_cache
