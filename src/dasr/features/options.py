"""The checks on an extractor's options, shared by the spec (where options are parsed) and the
extractor (which a library user may build directly): one error for one mistake, either way."""

from __future__ import annotations

import math

from dasr.errors import InputError
from dasr.features.methods import check_method, seed_rule
from dasr.features.pooling import POOLINGS
from dasr.regions import RegionConfig

# The fixed-box control's box side in network-input pixels: three cells of ResNet-50's stride-32
# seed layer.
DEFAULT_FIXED_BOX_SIDE = 96.0


def check_options(method: str, pooling: str, region: RegionConfig | None,
                  rmac_whitening: str | None, fixed_box_side: float) -> RegionConfig:
    """Checks the options an extractor is described by; the one check behind both an
    :class:`~dasr.features.spec.ExtractorSpec` and an :class:`~dasr.features.extractor.Extractor`.

    Returns:
      ``region``, or the method's default region configuration when None.

    Raises:
      InputError: an unknown method or pooling, a region configuration with another seed rule
        than the method's, an R-MAC whitening that is not a path or not for ``rmac``, or a
        fixed-box side that is not a positive finite number.
    """
    check_method(method)
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if isinstance(fixed_box_side, bool) or not isinstance(fixed_box_side, (int, float)) \
            or not math.isfinite(fixed_box_side) or fixed_box_side <= 0:
        raise InputError(f"fixed_box_side must be a positive number, got {fixed_box_side!r}")
    if rmac_whitening is not None and (method != "rmac" or not isinstance(rmac_whitening, str) or not rmac_whitening):
        raise InputError(f"rmac_whitening must be a whitening file's path, and only with method rmac; "
                         f"got {rmac_whitening!r} with {method}")
    if region is None:
        return RegionConfig(method=seed_rule(method))
    if region.method != seed_rule(method):
        raise InputError(f"method {method} takes the {seed_rule(method)} seed rule, "
                         f"but the region configuration has {region.method}")
    return region
