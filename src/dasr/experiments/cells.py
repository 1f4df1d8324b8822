"""The cells of an experiment: methods x (backbone, layer) x β x rule, plus ``extra_cells``, and each one's extractor.

``variants`` (a list of tables ``{label, methods, <extractor option> = value}``) adds, right after
each paper-rule cell of ``methods`` (default ``["dasr-star"]``), the same cell with those extractor
options, labelled ``"<cell label> <variant label>"``: e.g. ``{label = "contrastive", contrastive =
true}`` gives ``dasr-star contrastive``.  The options are data (:class:`Cell` ``options``), and a
cell without them builds exactly the extractor, hence the store, it built before variants existed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from dasr.errors import InputError
from dasr.features.extractor import Extractor
from dasr.features.methods import ALL_METHODS, GLOBAL_METHODS, REGION_METHODS, seed_rule
from dasr.features.spec import ExtractorSpec
from dasr.regions import default_nms
from dasr.regions.config import RULES

# The methods whose regions follow ``rule`` (the fixed-box control and the global baselines take the paper's).
RULE_METHODS = ("dasr", "dasr-star")
# What a variant may not set: the cell's own fields decide these.
CELL_OPTIONS = ("method", "backbone", "weights", "feature_layer", "nms_iou", "rule")

__all__ = ["Cell", "beta_text", "check_beta", "build_cells", "cell_spec", "make_extractor", "display_label"]


@dataclass(frozen=True)
class Cell:
    """One configuration of the extractor.

    Attributes:
      method: see :mod:`dasr.features.methods`.
      backbone: ``resnet50`` or ``vgg16``.
      layer: the pooled layer (None: the backbone's default).
      beta: ``"default"`` (the method's β), ``"none"`` (no NMS) or a number in (0, 1].
      label: the cell's name in the report (unique within a run).
      rule: ``paper`` or ``authors`` (:class:`~dasr.regions.RegionConfig`).
      options: further extractor options, sorted ``(name, value)`` pairs (a ``variants`` cell's).
    """

    method: str
    backbone: str
    layer: str | None
    beta: Any
    label: str = ""
    rule: str = "paper"
    options: tuple = ()

    def effective_beta(self) -> float | None:
        """The NMS IoU the extractor runs with (None: no NMS, or a global method)."""
        if self.beta == "none":
            return None
        if self.beta == "default":
            return default_nms(seed_rule(self.method)) if self.method in REGION_METHODS else None
        return float(self.beta)

    def to_json(self) -> dict:
        """The cell's fields and its ``effective_beta`` (the ``cell`` of a ``results.json`` entry;
        ``options`` as a table, left out when there are none)."""
        d = {**asdict(self), "effective_beta": self.effective_beta()}
        d.pop("options")
        return {**d, "options": dict(self.options)} if self.options else d

    @classmethod
    def from_json(cls, d: dict) -> Cell:
        """The inverse of :meth:`to_json` (``effective_beta`` is recomputed, not read).

        Raises:
          KeyError: a field is missing.
        """
        return cls(d["method"], d["backbone"], d["layer"], d["beta"], d["label"], d.get("rule", "paper"),
                   tuple(sorted((d.get("options") or {}).items())))


def beta_text(beta: Any) -> str:
    """β as a label part: ``no NMS``, ``default β`` or ``β=0.4``."""
    return "no NMS" if beta == "none" else ("default β" if beta == "default" else f"β={float(beta):g}")


def check_beta(beta: Any) -> Any:
    """``"default"``, ``"none"`` or β as a float.

    Raises:
      ValueError: anything else (a number outside (0, 1], a bool, another string).
    """
    if beta in ("default", "none"):
        return beta
    if isinstance(beta, (int, float)) and not isinstance(beta, bool) and 0 < float(beta) <= 1:
        return float(beta)
    raise InputError(f"beta {beta!r}: expected 'default', 'none' or a number in (0, 1]")


def check_rule(rule: Any) -> str:
    """``paper`` or ``authors``.

    Raises:
      InputError: anything else.
    """
    if rule not in RULES:
        raise InputError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    return rule


def build_cells(cfg: dict) -> list[Cell]:
    """methods x (backbone, layer) x betas x rules (global methods take no beta; only DASR and
    DASR* take a rule other than ``paper``), then ``extra_cells``.

    A label names only what varies between the cells (e.g. ``β=0.4`` when only β varies).

    Raises:
      ValueError: an unknown method, a bad β, or two cells with the same label.
    """
    layers = cfg["layers"]
    if isinstance(layers, dict):
        pairs = [(bb, layer) for bb, ls in layers.items() for layer in ls]
    else:
        pairs = [(cfg["backbone"], layer) for layer in layers] or [(cfg["backbone"], None)]
    betas = [check_beta(b) for b in (cfg["betas"] or ["default"])]
    rules = [check_rule(r) for r in (cfg.get("rules") or ["paper"])]
    raw = []
    for method in cfg["methods"]:
        if method not in ALL_METHODS:
            raise InputError(f"unknown method {method!r}; known: {', '.join(ALL_METHODS)}")
        for bb, layer in pairs:
            for beta in (["default"] if method in GLOBAL_METHODS else betas):
                for rule in (rules if method in RULE_METHODS else ["paper"]):
                    c = (method, bb, layer, beta, rule)
                    if c not in raw:
                        raw.append(c)
    vary = [len({c[i] for c in raw}) > 1 for i in range(5)]
    cells = []
    for method, bb, layer, beta, rule in raw:
        parts = [p for p, v in zip((method, bb, layer or "default layer", beta_text(beta), rule), vary)
                 if v and not (p == "paper" and rule == "paper")]
        cells.append(Cell(method, bb, layer, beta, " ".join(parts) or method, rule))
    cells = _with_variants(cfg, cells)
    for extra in cfg["extra_cells"]:
        method = extra.get("method", "dasr-star")
        if method not in ALL_METHODS:
            raise InputError(f"extra_cells: unknown method {method!r}")
        beta = check_beta(extra.get("beta", "default"))
        bb = extra.get("backbone", cfg["backbone"])
        layer = extra.get("layer", pairs[0][1] if pairs[0][0] == bb else None)
        rule = check_rule(extra.get("rule", "paper"))
        cells.append(Cell(method, bb, layer, beta, extra.get("label") or f"{method} {beta_text(beta)}", rule))
    labels = [c.label for c in cells]
    if len(set(labels)) != len(labels):
        raise InputError(f"two cells share a label: {labels}")
    return cells


def _with_variants(cfg: dict, cells: list[Cell]) -> list[Cell]:
    """``cells`` with each ``variants`` cell right after its paper-rule cell (module docstring).

    Raises:
      InputError: a variant of an unknown method, one that sets a cell's own option, or an
        invalid extractor option (checked here, before any work).
    """
    out = []
    for cell in cells:
        out.append(cell)
        for variant in cfg.get("variants") or []:
            methods = variant.get("methods", ["dasr-star"])
            unknown = [m for m in methods if m not in ALL_METHODS]
            own = sorted(set(variant) & set(CELL_OPTIONS))
            if unknown or own:
                raise InputError(f"variants: {variant['label']!r} " + (f"names unknown method(s) {unknown}" if unknown
                                 else f"sets {', '.join(own)}, which each cell decides"))
            if cell.rule == "paper" and cell.method in methods:
                options = tuple(sorted((k, v) for k, v in variant.items() if k not in ("label", "methods")))
                out.append(dataclasses.replace(cell, label=f"{cell.label} {variant['label']}", options=options))
                cell_spec(cfg, out[-1])  # an unknown or invalid option stops the run here
    return out


def cell_spec(cfg: dict, cell: Cell) -> ExtractorSpec:
    """The extractor of a cell: the config's ``extractor`` options, then the cell's own.

    Raises:
      ValueError: an unknown or invalid extractor option (named by
        :meth:`~dasr.features.spec.ExtractorSpec.from_options`).
    """
    options = dict(cfg["extractor"])
    options.update(method=cell.method, backbone=cell.backbone, weights=cfg["weights"],
                   feature_layer=cell.layer, tau=float(cfg["tau"]))
    if cell.rule != "paper":
        options["rule"] = cell.rule
    if cell.beta == "none":
        options["nms_iou"] = None
    elif cell.beta != "default":
        options["nms_iou"] = float(cell.beta)
    options.update(cell.options)
    return ExtractorSpec.from_options(**options)


def make_extractor(cfg: dict, cell: Cell) -> Extractor:
    """The built extractor of a cell (:func:`cell_spec`, then :meth:`ExtractorSpec.build`)."""
    return cell_spec(cfg, cell).build()


def display_label(cfg: dict, label: str) -> str:
    """A cell label as the plots and tables show it: each word through ``plot.labels`` (e.g. a
    layer name -> the paper's Block4_unit1)."""
    labels = cfg["plot"].get("labels") or {}
    return " ".join(labels.get(tok, tok) for tok in label.split(" "))
