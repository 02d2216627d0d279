"""Export adapters only, one module per target (onnx, openvino, tensorrt, torch_tensorrt): each takes a
model or an ONNX file and writes one artifact; none of them calls ``quantize``.

The export *verb* (quantize + adapter) lives a layer up, in ``coatnet_edge.pipeline.export``. The
public name ``coatnet_edge.export`` is both this package and that verb: the package object is made
callable and forwards the call, resolved by name at call time so no adapter depends on the verb.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("coatnet_edge.pipeline.export").export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
