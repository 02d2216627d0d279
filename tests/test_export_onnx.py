"""FP32 ONNX export runs in the real ONNX Runtime and OpenVINO and matches PyTorch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.metrics import compare_logits
from coatnet_edge.models.registry import create_model
from coatnet_edge.runtime import load_runner

PARITY_MAX_ABS = 1e-4


def _trained_like(name: str, size: int) -> torch.nn.Module:
    """Random weights, but BatchNorm statistics from real batches so activations are not degenerate."""
    torch.manual_seed(0)
    model = create_model(name, image_size=size, num_classes=10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, size, size))
    return model.eval()


@pytest.mark.parametrize(("name", "size"), [("coatnet_pico", 64), ("coatnet_pico", 128),
                                            ("coatnet_nano", 64), ("coatnet_nano", 96)])
def test_onnx_parity_in_onnxruntime_and_openvino(tmp_path: Path, name: str, size: int) -> None:
    model = _trained_like(name, size)
    path = export_onnx(model, tmp_path / "m.onnx", image_size=size)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.opset_import[0].version >= 17
    assert [i.name for i in graph.graph.input] == ["images"] and [o.name for o in graph.graph.output] == ["logits"]

    for batch in (1, 3):  # dynamic batch axis
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = model(x).numpy()
        for backend in ("onnxruntime", "openvino"):
            out = load_runner(path, backend=backend).run(x.numpy())
            agreement = compare_logits(ref, out)
            assert agreement.max_abs <= PARITY_MAX_ABS, (backend, batch, agreement)
            assert agreement.top1_agreement == 1.0


def test_graph_is_export_clean(tmp_path: Path) -> None:
    """No run-time index gathers or shape arithmetic: the bias is a constant, attention is plain MatMuls."""
    path = export_onnx(_trained_like("coatnet_pico", 64), tmp_path / "m.onnx", image_size=64)
    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert not {"Gather", "GatherElements", "Shape", "Identity"} & set(ops), ops
    assert ops["Softmax"] == 3 and ops["LayerNormalization"] >= 7  # one per attention block; pre-norms + head
    assert ops["MatMul"] >= 2 * ops["Softmax"]


def test_static_batch_export(tmp_path: Path) -> None:
    path = export_onnx(_trained_like("coatnet_pico", 64), tmp_path / "m.onnx", image_size=64,
                       batch_size=2, dynamic_batch=False)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 64, 64]


def test_interrupted_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import coatnet_edge.export.onnx as onnx_export

    def broken_checker(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash mid-export")

    monkeypatch.setattr(onnx_export.onnx.checker if hasattr(onnx_export, "onnx") else onnx.checker,
                        "check_model", broken_checker)
    with pytest.raises(RuntimeError, match="simulated"):
        export_onnx(_trained_like("coatnet_pico", 64), tmp_path / "m.onnx", image_size=64)
    assert list(tmp_path.iterdir()) == []


def test_old_opset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CoatnetEdgeError, match="opset 13 is too old"):
        export_onnx(_trained_like("coatnet_pico", 64), tmp_path / "m.onnx", image_size=64, opset=13)


def test_export_is_deterministic(tmp_path: Path) -> None:
    model = _trained_like("coatnet_pico", 64)
    a = export_onnx(model, tmp_path / "a.onnx", image_size=64).read_bytes()
    b = export_onnx(model, tmp_path / "b.onnx", image_size=64).read_bytes()
    assert a == b


def test_runner_refuses_broken_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07not really a model")
    with pytest.raises(CoatnetEdgeError, match=r"broken\.onnx"):
        load_runner(bad)
    with pytest.raises(CoatnetEdgeError, match=r"unknown artifact type '\.bin'"):
        (tmp_path / "x.bin").write_bytes(b"0")
        load_runner(tmp_path / "x.bin")


def test_openvino_fp32_is_really_fp32(tmp_path: Path) -> None:
    """OpenVINO would pick bf16 on AMX/AVX512-BF16 CPUs; the FP32 runner must pin f32."""
    model = _trained_like("coatnet_pico", 64)
    path = export_onnx(model, tmp_path / "m.onnx", image_size=64)
    runner = load_runner(path, backend="openvino")
    assert str(runner.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(runner.run(x) - ref).max() <= PARITY_MAX_ABS
