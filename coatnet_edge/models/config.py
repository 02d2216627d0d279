"""CoAtNet architecture configs: nested dataclasses normalized in one place.

The architecture table (this module and :mod:`coatnet_edge.models.registry`) is kept apart from
any weights: a config says what the network *is*, a checkpoint says what it learned.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from coatnet_edge.errors import CoatnetEdgeError

NUM_STAGES = 5  # S0 stem, S1-S2 MBConv, S3-S4 relative-attention Transformer (C-C-T-T)
STAGE_TYPES = ("stem", "conv", "conv", "transformer", "transformer")
STRIDE = 32


@dataclass(frozen=True)
class ConvStageConfig:
    """MBConv settings shared by S1 and S2 (paper: expansion 4, squeeze-excitation 0.25)."""

    expand_ratio: float = 4.0
    se_ratio: float = 0.25
    kernel_size: int = 3


@dataclass(frozen=True)
class TransformerStageConfig:
    """Relative-attention Transformer settings shared by S3 and S4 (paper: head size 32, FFN x4)."""

    head_dim: int = 32
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class CoAtNetConfig:
    """One CoAtNet. ``depths[0]`` counts the stem's 3x3 convs; ``depths[1:]`` count blocks per stage."""

    name: str = "custom"
    depths: tuple[int, ...] = (2, 2, 3, 5, 2)
    dims: tuple[int, ...] = (64, 96, 192, 384, 768)
    image_size: int = 224
    num_classes: int = 1000
    in_chans: int = 3
    conv: ConvStageConfig = field(default_factory=ConvStageConfig)
    transformer: TransformerStageConfig = field(default_factory=TransformerStageConfig)
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "depths", tuple(int(d) for d in self.depths))
        set_(self, "dims", tuple(int(d) for d in self.dims))
        if isinstance(self.conv, dict):
            set_(self, "conv", ConvStageConfig(**self.conv))
        if isinstance(self.transformer, dict):
            set_(self, "transformer", TransformerStageConfig(**self.transformer))
        if len(self.depths) != NUM_STAGES or len(self.dims) != NUM_STAGES:
            raise CoatnetEdgeError(f"config '{self.name}' needs {NUM_STAGES} depths and dims (S0..S4), got "
                                   f"{len(self.depths)} and {len(self.dims)}",
                                   fix="give depths=(stem_convs, s1, s2, s3, s4) and five channel widths")
        if min(self.depths) < 1 or min(self.dims) < 1:
            raise CoatnetEdgeError(f"config '{self.name}' has a stage with no blocks or channels",
                                   fix="every depth and dim must be >= 1")
        check_image_size(self.image_size)
        if self.num_classes < 1:
            raise CoatnetEdgeError(f"num_classes must be >= 1, got {self.num_classes}",
                                   fix="pass the number of classes your data has")
        head_dim = self.transformer.head_dim
        for stage in (3, 4):
            if self.dims[stage] % head_dim:
                raise CoatnetEdgeError(f"config '{self.name}': S{stage} width {self.dims[stage]} is not a "
                                       f"multiple of head_dim {head_dim}",
                                       fix="choose transformer widths divisible by the head size")

    def feature_size(self, stage: int) -> int:
        """Side of the square feature map stage ``stage`` produces (S0 halves the input)."""
        return self.image_size // (2 ** (stage + 1))

    def num_heads(self, stage: int) -> int:
        return self.dims[stage] // self.transformer.head_dim

    def replace(self, **changes: Any) -> CoAtNetConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoAtNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CoatnetEdgeError(f"unknown model config keys: {', '.join(unknown)}",
                                   fix=f"use only: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as err:
            raise CoatnetEdgeError(f"invalid model config ({err})", fix="check the config JSON") from None


def check_image_size(image_size: int) -> int:
    """CoAtNet downsamples 5 times; every stage needs an integer feature map."""
    if not isinstance(image_size, int) or image_size < STRIDE or image_size % STRIDE:
        raise CoatnetEdgeError(f"input size {image_size} is not a positive multiple of {STRIDE}",
                               fix=f"use e.g. {max(STRIDE, (int(image_size) // STRIDE) * STRIDE)} or "
                                   f"{(int(image_size) // STRIDE + 1) * STRIDE}")
    return image_size
