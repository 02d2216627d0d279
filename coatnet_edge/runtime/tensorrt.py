"""TensorRT runner: deserializes an engine (.engine/.plan) and runs it on the GPU (TensorRT 10 API).

CUDA buffers come from PyTorch (present on GPU servers and in JetPack's PyTorch wheels). TensorRT
is imported lazily; where it is missing the error says how to get it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.runtime.base import RunnerInfo

TENSORRT_HINT = ("on x86/SBSA with an NVIDIA GPU: pip install 'coatnet-edge[tensorrt]' "
                 "(wheels from pypi.nvidia.com); on Jetson: TensorRT comes with JetPack")


def import_tensorrt():
    """``tensorrt``, or a one-line error saying how to get it (shared by the runner and the engine builder)."""
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("tensorrt", hint=TENSORRT_HINT) from None
    return trt


class TensorRtRunner:
    def __init__(self, path: str | Path, *, precision: str = "unknown", device: str = "cuda:0", **_: object):
        trt = import_tensorrt()
        import torch

        path = Path(path)
        if not torch.cuda.is_available():
            raise CoatnetEdgeError("a TensorRT engine needs an NVIDIA GPU and none is visible", path=path,
                                   fix="run it on the machine (and GPU model) it was built for")
        self.torch = torch
        self.device = torch.device(device)
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise CoatnetEdgeError("TensorRT cannot deserialize this engine (built with another TensorRT version "
                                   "or GPU?)", path=path, fix="rebuild it here with `coatnet-edge export "
                                                              "--backend tensorrt` or the .trtexec.sh next to it")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.input_name = inputs[0]
        self.output_name = next(n for n in names if n not in inputs)
        self.info = RunnerInfo("tensorrt", precision, torch.cuda.get_device_name(self.device), str(path))

    def run(self, images: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        y = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device=self.device,
                        dtype=torch.float32)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, y.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise CoatnetEdgeError("TensorRT execution failed", path=self.info.artifact, fix="see TensorRT's log")
        stream.synchronize()
        return y.cpu().numpy()
