"""Quantization-aware training: NNCF fake-quant CoAtNet, distilled from its own FP32 model.

The route: ``nncf.quantize`` on the torch model (same preset and hybrid CNN/attention scope as
PTQ; NNCF 3.4's torch bias correction crashes on CoAtNet, so it is off here and QAT does that
job), then fine-tune weights and quantizer scales with KD from the frozen FP32 model (plus
cross-entropy where labels exist), BatchNorm statistics frozen. Export goes through
``nncf.strip(..., StripFormat.NATIVE)``, which turns NNCF's quantizers into torch's native
fake-quantize ops; those export as standard QuantizeLinear/DequantizeLinear (a plain
``torch.onnx.export`` of the NNCF model would write ``org.openvinotoolkit:FakeQuantize``).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from coatnet_edge.calibration.ptq import PtqSettings, nncf_preset_args, tensorrt_activation_args, to_signed_int8
from coatnet_edge.data.augment import AugmentConfig
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.sampling import CalibrationSet
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.manifest import atomic_path, ensure_output_dir
from coatnet_edge.metrics import compare_logits
from coatnet_edge.progress import progress_bar
from coatnet_edge.training.torch_data import NO_LABEL, FolderDataset, without_worker_sigchld

Log = Callable[[str], None]
_TORCH_FLOAT_IN_ATTENTION = {"layer_norm", "softmax", "add", "mul", "div", "gelu", "__add__", "__mul__",
                             "__truediv__", "__iadd__"}


@dataclass(frozen=True)
class QatConfig:
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-4  # AdamW, cosine decay; measured on the built-in student: 1e-4 > 2e-5
    kd_alpha: float = 1.0  # KD weight when labels exist (1.0: reproduce the FP32 model, labels unused)
    kd_temperature: float = 1.0  # match the FP32 logits themselves: agreement is the goal
    min_crop_scale: float = 0.5
    seed: int = 0
    workers: int = 2
    max_steps_per_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QatResult:
    model: Any  # onnx.ModelProto with Q/DQ
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    ignored: list[str] = field(default_factory=list)


def torch_hybrid_float_nodes(model: nn.Module, image_size: int, attention_stages: str = r"^/stages/stages\.[34]/"
                             ) -> list[str]:
    r"""NNCF torch node names the hybrid scheme keeps in float (as ``ptq.hybrid_float_nodes``; the ONNX
    stage regex ``^/stages/stages\.[34]/`` becomes NNCF's ``^stages/[34]/``)."""
    stages = re.compile(attention_stages.replace("/stages/stages\\.", "stages/").replace("^/", "^"))
    from nncf.torch.function_hook import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(wrap_model(copy.deepcopy(model)), torch.zeros(1, 3, image_size, image_size))
    return [n.node_name for n in graph.get_all_nodes()
            if (stages.match(n.node_name) and n.node_type in _TORCH_FLOAT_IN_ATTENTION)
            or (n.node_type == "mean" and not n.node_name.startswith("stages/"))]


def fake_quantize(model: nn.Module, calib: CalibrationSet, settings: PtqSettings) -> tuple[nn.Module, list[str]]:
    """NNCF fake-quant copy of ``model`` calibrated on ``calib`` (the QAT starting point)."""
    try:
        import nncf
    except ImportError:
        raise MissingDependencyError("nncf", hint="pip install nncf") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    nncf.set_log_level(logging.WARNING)
    student = copy.deepcopy(model).eval()
    size = calib.preprocess.image_size
    ignored = torch_hybrid_float_nodes(student, size, settings.attention_stages) if settings.scheme == "hybrid" \
        else []
    dataset = nncf.Dataset([torch.from_numpy(b) for b in calib.batches(1)])
    quantized = nncf.quantize(
        student, dataset, subset_size=len(calib),
        **nncf_preset_args(settings),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False) if ignored else None,
        advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=True,
                                                           **tensorrt_activation_args(settings)),
    )
    return quantized, ignored


@without_worker_sigchld
def qat(model: nn.Module, calib: CalibrationSet, train_set: ImageFolder, *, settings: PtqSettings | None = None,
        config: QatConfig | None = None, eval_images: np.ndarray | None = None, out: str | Path | None = None,
        log: Log = print) -> QatResult:
    """Fine-tune an INT8 fake-quant copy of ``model`` against ``model`` itself; return its Q/DQ ONNX.

    ``eval_images`` (preprocessed; default: the calibration images) are where agreement with FP32 is
    logged after each epoch; the last epoch is kept (cosine schedule). ``out`` receives a checkpoint
    per epoch (``qat_last.safetensors``).
    """
    import importlib.util

    if importlib.util.find_spec("torchao") is None:  # needed at export: fail before minutes of training
        raise MissingDependencyError("torchao", hint="pip install torchao (NNCF's QAT export needs it)")
    settings = settings or PtqSettings()
    config = config or QatConfig()
    pre = calib.preprocess
    torch.manual_seed(config.seed)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student, ignored = fake_quantize(model, calib, settings)
    check = torch.from_numpy(calib.images if eval_images is None else eval_images)
    with torch.no_grad():
        reference = _logits(teacher, check)
    dataset = FolderDataset(train_set, pre, train=True, seed=config.seed,
                            augment=AugmentConfig(scale=(config.min_crop_scale, 1.0)))
    steps = len(dataset) // config.batch_size
    if steps == 0:
        raise CoatnetEdgeError(f"{len(dataset)} images cannot fill one QAT batch of {config.batch_size}",
                               path=train_set.root, fix="lower the QAT batch size or add images")
    steps = min(steps, config.max_steps_per_epoch or steps)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=0.0)
    start = compare_logits(reference.numpy(), _logits(student, check).numpy())
    history = [{"epoch": 0, "top1_agreement": start.top1_agreement, "sqnr_db": start.sqnr_db}]
    log(f"QAT start (PTQ init): top-1 agreement with FP32 {start.top1_agreement:.4f}, SQNR {start.sqnr_db:.1f} dB")
    checkpoint = None
    checkpoint_dir = ensure_output_dir(out) if out is not None else None
    for epoch in range(config.epochs):
        dataset.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator,
                            num_workers=config.workers, drop_last=True)
        _train_mode(student)
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        with progress_bar(f"QAT epoch {epoch + 1}/{config.epochs}") as bar:
            for i, (x, y) in enumerate(loader):
                if i >= steps:
                    break
                lr = config.lr * 0.5 * (1 + np.cos(np.pi * (epoch * steps + i) / (config.epochs * steps)))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = _loss(student, teacher, x, y, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(x)
                total_loss += float(loss.detach()) * len(x)
                bar(i + 1, steps, f"loss {total_loss / seen:.4f}")
        student.eval()
        agreement = compare_logits(reference.numpy(), _logits(student, check).numpy())
        record = {"epoch": epoch + 1, "loss": total_loss / seen, "top1_agreement": agreement.top1_agreement,
                  "sqnr_db": agreement.sqnr_db, "seconds": round(time.perf_counter() - started, 1)}
        history.append(record)
        log(f"QAT epoch {epoch + 1}/{config.epochs}: loss {record['loss']:.4f}, top-1 agreement with FP32 "
            f"{agreement.top1_agreement:.4f}, SQNR {agreement.sqnr_db:.1f} dB ({record['seconds']} s)")
        if checkpoint_dir is not None:
            checkpoint = save_qat_checkpoint(student, checkpoint_dir / "qat_last.safetensors",
                                             {"epoch": epoch + 1, "history": history, "qat": config.to_dict(),
                                              "settings": settings.to_dict()})
    student.eval()
    onnx_model = export_qat_onnx(student, pre.image_size)
    if settings.preset == "tensorrt":
        to_signed_int8(onnx_model)
    return QatResult(onnx_model, history, checkpoint, ignored)


def _train_mode(model: nn.Module) -> None:
    """Train mode with BatchNorm statistics frozen (they were folded into the calibrated ranges)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _loss(student: nn.Module, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: QatConfig) -> torch.Tensor:
    from coatnet_edge.training.verbs import kd_loss

    logits = student(x)
    with torch.no_grad():
        target = teacher(x)
    kd = kd_loss(logits, target, cfg.kd_temperature)
    labeled = y != NO_LABEL
    if not bool(labeled.any()):
        return kd
    return cfg.kd_alpha * kd + (1 - cfg.kd_alpha) * F.cross_entropy(logits[labeled], y[labeled])


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


def save_qat_checkpoint(model: nn.Module, path: Path, extra: dict[str, Any]) -> Path:
    """Weights + quantizer parameters (safetensors) with NNCF's transformation config in the metadata
    (``nncf.torch.load_from_config`` rebuilds the fake-quant model from it without re-calibrating)."""
    import nncf.torch
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"coatnet_edge_qat": json.dumps(extra), "nncf_config": json.dumps(nncf.torch.get_config(model),
                                                                                 default=str)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def export_qat_onnx(model: nn.Module, image_size: int) -> Any:
    """Strip NNCF's quantizers to torch-native fake-quant and export to Q/DQ ONNX (in memory)."""
    import tempfile

    import nncf
    import onnx

    from coatnet_edge.export.onnx import export_onnx

    example = torch.zeros(1, 3, image_size, image_size)
    try:
        native = nncf.strip(model, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example)
    except ModuleNotFoundError as err:
        raise MissingDependencyError(err.name or "torchao", hint="pip install torchao (NNCF's QAT export needs it)") \
            from None
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(native, Path(tmp) / "qat.onnx", image_size=image_size)
        return onnx.load(str(path))

