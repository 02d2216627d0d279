"""Export adapters only, one module per target (onnx, openvino, tensorrt, torch_tensorrt): each takes a
model or an ONNX file and writes one artifact; none of them calls ``quantize``.

The export *verb* (quantize + adapter) lives a layer up: ``coatnet_edge.export_model``, defined in
``coatnet_edge.pipeline.export``.
"""
