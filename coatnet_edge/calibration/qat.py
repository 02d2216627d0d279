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
import functools
import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from coatnet_edge.atomic import atomic_path, ensure_output_dir
from coatnet_edge.calibration.options import QatConfig
from coatnet_edge.calibration.ptq import (
    PtqSettings,
    hybrid_keeps_float,
    nncf_preset_args,
    tensorrt_activation_args,
    to_signed_int8,
)
from coatnet_edge.data.augment import AugmentConfig
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.sampling import ImageSample
from coatnet_edge.errors import CoatnetEdgeError, MissingDependencyError
from coatnet_edge.export.onnx import export_onnx
from coatnet_edge.metrics import Agreement, compare_logits
from coatnet_edge.models.stages import OURS_ATTENTION_STAGES, AttentionStages
from coatnet_edge.training.loop import EpochStats, Loop, run_epochs
from coatnet_edge.training.losses import Objective
from coatnet_edge.training.predict import eval_logits
from coatnet_edge.training.schedule import Schedule
from coatnet_edge.training.torch_data import FolderDataset, without_worker_sigchld

Log = Callable[[str], None]
_EVAL_BATCH = 128  # images per forward pass when measuring agreement with FP32


@dataclass
class QatResult:
    model: Any  # onnx.ModelProto with Q/DQ
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    ignored: list[str] = field(default_factory=list)


def torch_hybrid_float_nodes(model: nn.Module, image_size: int,
                             attention_stages: AttentionStages = OURS_ATTENTION_STAGES, in_chans: int = 3) -> list[str]:
    """Names of the NNCF torch nodes the hybrid scheme keeps in float (``ptq.hybrid_keeps_float``, as PTQ)."""
    from nncf.torch.function_hook import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(wrap_model(copy.deepcopy(model)), torch.zeros(1, in_chans, image_size, image_size))
    return [n.node_name for n in graph.get_all_nodes()
            if hybrid_keeps_float(n.node_name, n.node_type, attention_stages)]


def _allow_slow_extension_build() -> None:
    """NNCF builds its torch C++ extension on first use and gives up after 60 s; on a busy 2-core machine the build
    took longer (a QAT run died with ExtensionLoaderTimeoutException). Set when QAT starts; a user's setting wins."""
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "600")


def fake_quantize(model: nn.Module, calib: ImageSample, settings: PtqSettings) -> tuple[nn.Module, list[str]]:
    """NNCF fake-quant copy of ``model`` calibrated on ``calib`` (the QAT starting point)."""
    try:
        _allow_slow_extension_build()
        import nncf
    except ImportError:
        raise MissingDependencyError("nncf", hint="pip install nncf") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    nncf.set_log_level(logging.WARNING)
    student = copy.deepcopy(model).eval()
    size = calib.preprocess.image_size
    ignored = torch_hybrid_float_nodes(student, size, settings.attention_stages, calib.preprocess.channels) \
        if settings.scheme == "hybrid" else []
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
def qat(model: nn.Module, calib: ImageSample, train_set: ImageFolder, *, settings: PtqSettings | None = None,
        config: QatConfig | None = None, eval_images: np.ndarray | None = None, out: str | Path | None = None,
        log: Log = print) -> QatResult:
    """Fine-tune an INT8 fake-quant copy of ``model`` against ``model`` itself; return its Q/DQ ONNX.

    ``eval_images`` (preprocessed; default: the calibration images) are where agreement with FP32 is
    logged after each epoch; the last epoch is kept (cosine schedule). ``out`` receives a checkpoint
    per epoch (``qat_last.safetensors``).
    """
    if importlib.util.find_spec("torchao") is None:  # needed at export: fail before minutes of training
        raise MissingDependencyError("torchao", hint="pip install torchao (NNCF's QAT export needs it)")
    settings = settings or PtqSettings()
    config = config or QatConfig()
    torch.manual_seed(config.seed)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student, ignored = fake_quantize(model, calib, settings)
    check = torch.from_numpy(calib.images if eval_images is None else eval_images)
    reference = eval_logits(teacher, check.split(_EVAL_BATCH))
    dataset = FolderDataset(train_set, calib.preprocess, train=True, seed=config.seed,
                            augment=AugmentConfig(scale=(config.min_crop_scale, 1.0)))
    steps = len(dataset) // config.batch_size
    if steps == 0:
        raise CoatnetEdgeError(f"{len(dataset)} images cannot fill one QAT batch of {config.batch_size}",
                               path=train_set.root, fix="lower the QAT batch size or add images")
    steps = min(steps, config.max_steps_per_epoch or steps)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=0.0)
    monitor = _Monitor(student, reference, check, config, settings, log,
                       ensure_output_dir(out) if out is not None else None)
    monitor.start()
    loop = Loop("QAT", config.epochs, steps, Schedule(config.lr, config.epochs * steps),
                Objective(teacher, kd_alpha=config.kd_alpha, temperature=config.kd_temperature),
                functools.partial(_epoch_loader, dataset, config), train_mode=_train_mode)
    run_epochs(student, optimizer, loop, monitor)
    student.eval()
    onnx_model = export_qat_onnx(student, calib.preprocess.image_size, calib.preprocess.channels)
    if settings.preset == "tensorrt":
        to_signed_int8(onnx_model)
    return QatResult(onnx_model, monitor.history, monitor.checkpoint, ignored)


def _epoch_loader(dataset: FolderDataset, config: QatConfig, epoch: int) -> DataLoader:
    """One epoch's shuffled batches, the order seeded by (seed, epoch)."""
    dataset.set_epoch(epoch)
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator,
                      num_workers=config.workers, drop_last=True)


def _train_mode(model: nn.Module) -> None:
    """Train mode with BatchNorm statistics frozen (they were folded into the calibrated ranges)."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@dataclass
class _Monitor:
    """QAT's per-epoch callback: agreement with the FP32 model on the check images, history, log, checkpoint."""

    student: nn.Module
    reference: torch.Tensor  # FP32 logits (N, classes) of ``check``
    check: torch.Tensor  # preprocessed images (N, 3, H, W)
    config: QatConfig
    settings: PtqSettings
    log: Log
    checkpoint_dir: Path | None = None  # qat_last.safetensors goes here after every epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None

    def agreement(self) -> Agreement:
        logits = eval_logits(self.student, self.check.split(_EVAL_BATCH))
        return compare_logits(self.reference.numpy(), logits.numpy())

    def start(self) -> None:
        """Epoch 0: the PTQ-initialised model, before any training."""
        start = self.agreement()
        self.history.append({"epoch": 0, "top1_agreement": start.top1_agreement, "sqnr_db": start.sqnr_db})
        self.log(f"QAT start (PTQ init): top-1 agreement with FP32 {start.top1_agreement:.4f}, "
                 f"SQNR {start.sqnr_db:.1f} dB")

    def __call__(self, stats: EpochStats) -> None:
        self.student.eval()
        agreement = self.agreement()
        record = {"epoch": stats.epoch, "loss": stats.loss / stats.seen, "top1_agreement": agreement.top1_agreement,
                  "sqnr_db": agreement.sqnr_db, "seconds": round(stats.elapsed(), 1)}
        self.history.append(record)
        self.log(f"QAT epoch {stats.epoch}/{self.config.epochs}: loss {record['loss']:.4f}, top-1 agreement with "
                 f"FP32 {agreement.top1_agreement:.4f}, SQNR {agreement.sqnr_db:.1f} dB ({record['seconds']} s)")
        if self.checkpoint_dir is not None:
            self.checkpoint = save_qat_checkpoint(
                self.student, self.checkpoint_dir / "qat_last.safetensors",
                {"epoch": stats.epoch, "history": self.history, "qat": self.config.to_dict(),
                 "settings": self.settings.to_dict()})


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


def export_qat_onnx(model: nn.Module, image_size: int, in_chans: int = 3) -> Any:
    """Strip NNCF's quantizers to torch-native fake-quant and export to Q/DQ ONNX (in memory)."""
    import tempfile

    import nncf
    import onnx

    example = torch.zeros(1, in_chans, image_size, image_size)
    try:
        native = nncf.strip(model, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example)
    except ModuleNotFoundError as err:
        raise MissingDependencyError(err.name or "torchao", hint="pip install torchao (NNCF's QAT export needs it)") \
            from None
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(native, Path(tmp) / "qat.onnx", image_size=image_size, in_chans=in_chans)
        return onnx.load(str(path))

