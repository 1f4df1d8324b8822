"""The description methods: DASR's two region methods, the fixed-box control, the global baselines.

* ``dasr``: 3x3 local maxima of the activation map as seeds, no NMS (the paper);
* ``dasr-star``: every cell above the map's mean as a seed, NMS at β = 0.3;
* ``fixed-box``: the control: DASR*'s seeds and NMS, but every box a fixed square centred on
  its seed (what the backprop's shape estimate adds is DASR* minus this);
* ``gap`` (SPoC), ``mac``, ``rmac``, ``crow``, ``gem`` (p = 3): one whole-image vector (a single "region").
"""

from __future__ import annotations

from dasr.errors import InputError

GLOBAL_METHODS = ("gap", "mac", "rmac", "crow", "gem")
REGION_METHODS = ("dasr", "dasr-star", "fixed-box")
ALL_METHODS = REGION_METHODS + GLOBAL_METHODS


def check_method(method: str) -> str:
    """``method`` itself.

    Raises:
      ValueError: not one of :data:`ALL_METHODS`.
    """
    if method not in ALL_METHODS:
        raise InputError(f"method must be one of {', '.join(ALL_METHODS)}, got {method!r}")
    return method


def seed_rule(method: str) -> str:
    """The seed rule (:data:`dasr.regions.METHODS`) a method's regions come from.

    ``dasr`` for DASR; ``dasr-star`` for DASR* and for the fixed-box control (DASR*'s seeds);
    a global method has no seeds, but its configuration is DASR*'s (only ``max_side`` matters).
    """
    return "dasr" if check_method(method) == "dasr" else "dasr-star"
