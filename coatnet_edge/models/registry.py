"""Named CoAtNet variants: the paper's CoAtNet-0..3 and edge sizes that train on a laptop CPU.

A variant is a row of the architecture table; weights live elsewhere (checkpoints, built-in models).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.config import CoAtNetConfig

if TYPE_CHECKING:
    from coatnet_edge.models.coatnet import CoAtNet

_VARIANTS: dict[str, CoAtNetConfig] = {}


def register_variant(cfg: CoAtNetConfig) -> CoAtNetConfig:
    if cfg.name in _VARIANTS:
        raise ValueError(f"variant {cfg.name!r} registered twice")
    _VARIANTS[cfg.name] = cfg
    return cfg


# Paper, Table 3 (L = blocks per stage incl. the 2-conv stem, D = channels).
register_variant(CoAtNetConfig("coatnet_0", depths=(2, 2, 3, 5, 2), dims=(64, 96, 192, 384, 768)))
register_variant(CoAtNetConfig("coatnet_1", depths=(2, 2, 6, 14, 2), dims=(64, 96, 192, 384, 768)))
register_variant(CoAtNetConfig("coatnet_2", depths=(2, 2, 6, 14, 2), dims=(128, 128, 256, 512, 1024)))
register_variant(CoAtNetConfig("coatnet_3", depths=(2, 2, 6, 14, 2), dims=(192, 192, 384, 768, 1536)))
# Edge sizes (ours): same C-C-T-T topology, narrower and shallower.
register_variant(CoAtNetConfig("coatnet_nano", depths=(2, 2, 2, 3, 2), dims=(32, 48, 96, 192, 384)))
register_variant(CoAtNetConfig("coatnet_micro", depths=(2, 2, 2, 2, 1), dims=(32, 48, 96, 128, 192)))
register_variant(CoAtNetConfig("coatnet_pico", depths=(2, 1, 2, 2, 1), dims=(24, 32, 64, 96, 160)))


def list_variants() -> list[str]:
    return sorted(_VARIANTS)


def get_variant(name: str) -> CoAtNetConfig:
    try:
        return _VARIANTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _VARIANTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CoatnetEdgeError(f"unknown CoAtNet variant '{name}'{hint}",
                               fix=f"choose one of: {', '.join(list_variants())}") from None


def create_model(name_or_cfg: str | CoAtNetConfig, *, num_classes: int | None = None,
                 image_size: int | None = None, **overrides: Any) -> CoAtNet:
    """Build a randomly initialised CoAtNet from a variant name (or a config) and overrides."""
    from coatnet_edge.models.coatnet import CoAtNet

    cfg = name_or_cfg if isinstance(name_or_cfg, CoAtNetConfig) else get_variant(name_or_cfg)
    changes = dict(overrides)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if image_size is not None:
        changes["image_size"] = image_size
    return CoAtNet(cfg.replace(**changes) if changes else cfg)
