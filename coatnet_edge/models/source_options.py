"""What a user may say about their model beyond its path: the same fields on the CLI, in the API and in a
recipe's ``[source]``. Unset fields are read from the source itself (checkpoint args, config.json, the
weights' shapes, timm's pretrained config), and every preprocessing value keeps a note of its origin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from coatnet_edge.data.preprocess import PreprocessConfig

Interpolation = Literal["bicubic", "bilinear", "nearest"]
USER = "set by the user"


@dataclass(frozen=True)
class SourceOptions:
    """Overrides for reading a model source; each unset field is read from the source."""

    weights: str | None = None  # local weights for a timm:<name> source
    num_classes: int | None = None
    image_size: int | None = None  # timm sources: passed to timm.create_model (relative-position tables)
    ema: bool = False  # timm training checkpoints: load state_dict_ema instead of state_dict
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    crop_pct: float | None = None
    interpolation: Interpolation | None = None

    def merged(self, **values: Any) -> SourceOptions:
        """These options with ``values`` filled in where they are not None (the verbs' keyword shortcuts)."""
        given = {k: v for k, v in values.items() if v is not None}
        return dataclasses.replace(self, **given) if given else self

    def preprocess_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": tuple(self.mean), "std": tuple(self.std), "crop_pct": self.crop_pct,
                               "interpolation": self.interpolation}
        return {k: v for k, v in out.items() if v not in (None, ())}


def resolve_preprocess(base: PreprocessConfig, base_origin: str, layers: list[tuple[dict[str, Any], dict[str, str]]],
                       *, image_size: int, channels: int) -> tuple[PreprocessConfig, dict[str, str]]:
    """``base`` with each later layer's values on top (later wins), and where every field came from.

    A 3-value mean/std on a 1-channel model becomes its average (as timm does for ``in_chans=1``).
    """
    values: dict[str, Any] = {k: getattr(base, k) for k in ("mean", "std", "crop_pct", "interpolation")}
    origin = dict.fromkeys(values, base_origin)
    for layer, layer_origin in layers:
        for key, value in layer.items():
            values[key] = value
            origin[key] = layer_origin.get(key, USER)
    for key in ("mean", "std"):
        if channels == 1 and len(values[key]) == 3:
            values[key] = (sum(values[key]) / 3.0,)
            origin[key] += " (averaged over RGB for a 1-channel model)"
    return PreprocessConfig(image_size=image_size, channels=channels, **values), origin
