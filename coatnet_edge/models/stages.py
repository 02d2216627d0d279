r"""Which stages of a CoAtNet are attention stages: said once, by index, and read in both forms of a layer's name.

The hybrid INT8 scheme keeps part of these stages in float on two routes whose layer names come from the same
module tree: the ONNX exporter's node names (``/stages/stages.3/blocks/blocks.0/attn/MatMul``, PTQ) and NNCF's
torch node names (``stages/3/blocks/0/attn/linear/0``, QAT). Both are derived from one ``AttentionStages``, so
the two routes cannot pick different stages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class AttentionStages:
    """The children of ``container`` (the top-level module that runs the stages in order) that are attention."""

    indices: tuple[int, ...]
    container: str = "stages"

    def __post_init__(self) -> None:
        object.__setattr__(self, "indices", tuple(self.indices))
        if not self.indices or not all(0 <= i <= 9 for i in self.indices):  # one digit each: see onnx_pattern
            raise ValueError(f"attention stage indices {self.indices}: give at least one, each 0-9")

    @property
    def onnx_pattern(self) -> str:
        r"""Regex over ONNX node names, e.g. ``^/stages/stages\.[34]/``: the form manifests record."""
        name = re.escape(self.container)
        return rf"^/{name}/{name}\.[{self._digits}]/"

    @property
    def torch_pattern(self) -> str:
        """Regex over NNCF torch node names, e.g. ``^stages/[34]/``."""
        return rf"^{re.escape(self.container)}/[{self._digits}]/"

    @property
    def _digits(self) -> str:
        return "".join(str(i) for i in sorted(set(self.indices)))

    def contains(self, layer: str) -> bool:
        """Whether a layer, named in either form, lies in one of these stages."""
        return bool(re.match(self.onnx_pattern, layer) or re.match(self.torch_pattern, layer))

    def outside_all_stages(self, layer: str) -> bool:
        """Whether a layer, named in either form, lies outside every stage (the head, its pooling)."""
        return not layer.startswith((f"/{self.container}/", f"{self.container}/"))


OURS_ATTENTION_STAGES = AttentionStages((3, 4))  # S0 is the stem: S3-S4 are stages.3-4
