"""Export adapters, one module per target (onnx, openvino, tensorrt, torch_tensorrt), registered in
``api.BACKENDS``; ``api.export`` drives them.

The package is also the verb: ``coatnet_edge.export(...)`` calls ``api.export`` (the package object
is made callable), so the API mirrors ``coatnet-edge export`` although the name is a package.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from coatnet_edge.export.api import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
