"""Reproduce one of the paper's experiments from a config file (``experiments/*.toml``).

``dasr reproduce experiments/table1.toml [--set KEY=VALUE ...]`` (or :func:`run_experiment`):

1. loads the config (TOML) and applies the overrides (``a.b=value``, the value read as a TOML
   scalar or list, else as a plain string: ``--set bench=instance-track``), checking every
   value (:mod:`~dasr.experiments.config`);
2. checks that every dataset the run needs exists, BEFORE any extraction (a missing one stops
   the run with its :class:`~dasr.eval.datasets.DatasetMissingError` message;
   :mod:`~dasr.experiments.benchmarks`);
3. runs every cell (benchmark x method x backbone/layer x beta, :mod:`~dasr.experiments.cells`):
   instance search with :func:`dasr.eval.instance.evaluate`, VLAD image search with
   :mod:`dasr.eval.image_search`, or the distractor scalability test
   (:mod:`~dasr.experiments.scalability`); region stores are reused (:mod:`~dasr.experiments.runners`);
4. writes ``results/<experiment>/`` (:mod:`~dasr.experiments.report`): ``results.md`` and
   ``results.csv`` (our number, the paper's, the difference; ``n/a (different data)`` on data
   that is not the paper's, :mod:`~dasr.experiments.paper`), ``bootstrap.csv`` (95% paired
   bootstrap CI of the reference method minus every other cell over queries,
   :mod:`~dasr.experiments.bootstrap`), ``results.json`` (every
   :class:`~dasr.experiments.entries.Entry`, for ``--set replot=true``) and PNG plots
   (:mod:`~dasr.experiments.plots`); the paper's statements next to ours
   (:mod:`~dasr.experiments.statements`).

``task = "figures"`` redraws every run of the listed experiments and adds the pictures
(:mod:`~dasr.experiments.redraw`, :mod:`~dasr.experiments.gallery`; the drawing itself is :mod:`dasr.figures`).

Config keys: see :data:`~dasr.experiments.config.DEFAULTS` and ``experiments/README.md``.
"""

import importlib

__all__ = ["DEFAULTS", "ExperimentError", "apply_overrides", "load_config", "run_experiment"]

# Loaded on first use, so that a module of this package that needs no network (the simulated
# distractors of the search-scale benchmark, the config parser) imports without TensorFlow.
_HOME = {"DEFAULTS": "config", "apply_overrides": "config", "load_config": "config",
         "ExperimentError": "run", "run_experiment": "run"}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
