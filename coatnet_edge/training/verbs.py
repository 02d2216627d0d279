"""Training and knowledge distillation (`coatnet_edge.train` / `coatnet_edge.distill`): one loop, plain PyTorch.

``train`` fits a CoAtNet on a labeled folder (cross-entropy with label smoothing). ``distill``
fits a student to a frozen teacher's temperature-softened logits (KL x T^2), mixed with
cross-entropy on labeled folders, or alone on unlabeled ones (pure KD: a folder of raw images is
enough). This module resolves data, student and teacher; ``fit`` runs them through the loop.
Launched by ``torchrun`` (WORLD_SIZE > 1) it uses DistributedDataParallel: gloo on CPU, nccl on GPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coatnet_edge.data.defaults import builtin_preprocess, is_builtin_dataset
from coatnet_edge.data.folders import ImageFolder, format_skipped, looks_labeled, scan_folder
from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.models.builtin import is_builtin
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.training.config import FitResult, TrainConfig

if TYPE_CHECKING:  # torch and the modules built on it are imported by the functions that use them
    from torch import nn

    from coatnet_edge.models.coatnet import CoAtNet
    from coatnet_edge.models.source import LoadedModel

__all__ = ["FitResult", "TrainConfig", "distill", "report_pair", "resolve_splits", "teacher_model_classes", "train"]

Log = Callable[[str], None]


def train(data: str | Path, *, out: str | Path, model: str | Path | CoAtNet = "coatnet_pico",
          val: str | Path | None = None, image_size: int | None = None, resume: str | Path | None = None,
          config: TrainConfig | None = None, log: Log = print, **options: Any) -> FitResult:
    """Train (or fine-tune from a checkpoint) a CoAtNet on a labeled image folder."""
    from coatnet_edge.training.fit import fit

    cfg = dataclasses.replace(config or TrainConfig(), **options)
    train_dir, val_dir = resolve_splits(data, val)
    train_set = _scan(train_dir, labeled=True, purpose="training", log=log)
    student, pre = _build_student(model, len(train_set.classes), image_size, train_dir, cfg.seed)
    val_set = _scan_val(val_dir, train_set.classes)
    return fit(student, pre, train_set, val_set, cfg, out, resume=resume, teacher=None, log=log)


def distill(data: str | Path, *, teacher: str | Path | nn.Module, out: str | Path,
            student: str | Path | CoAtNet = "coatnet_pico", val: str | Path | None = None,
            labeled: bool | None = None, image_size: int | None = None, resume: str | Path | None = None,
            config: TrainConfig | None = None, teacher_weights: str | Path | None = None,
            teacher_options: SourceOptions | None = None, log: Log = print, **options: Any) -> FitResult:
    """Distill a teacher into a student on labeled images (KD + CE) or unlabeled images (pure KD).

    ``teacher`` may be ``timm:<name>`` with ``teacher_weights`` (a fine-tuned timm CoAtNet): it runs
    on its own preprocessing (the student's batch is re-normalized and resized for it), or a timm training
    checkpoint / Hugging Face folder; ``teacher_options`` say how to read it (as ``load_model``).
    """
    from coatnet_edge.training.fit import fit

    cfg = dataclasses.replace(config or TrainConfig(), **options)
    train_dir, val_dir = resolve_splits(data, val)
    teacher_model, teacher_loaded = _load_teacher(teacher, teacher_weights, teacher_options)
    train_set = _scan(train_dir, labeled=labeled, purpose="distillation", log=log)
    classes = teacher_loaded.class_names if teacher_loaded else []
    if train_set.labeled and len(train_set.classes) != teacher_model_classes(teacher_model):
        raise CoatnetEdgeError(f"teacher predicts {teacher_model_classes(teacher_model)} classes but the folder has "
                               f"{len(train_set.classes)}", path=train_dir,
                               fix="use the teacher trained on these classes, or --unlabeled for pure KD")
    num_classes = teacher_model_classes(teacher_model)
    model, pre = _build_student(student, num_classes, image_size or (teacher_loaded.preprocess.image_size
                                                                     if teacher_loaded else None), train_dir, cfg.seed)
    val_set = _scan_val(val_dir, train_set.classes or classes)
    if not train_set.labeled:
        cfg = dataclasses.replace(cfg, kd_alpha=1.0)
        log(f"{train_dir}: unlabeled images -> pure knowledge distillation (no labels needed)")
    teacher_pre = teacher_loaded.preprocess if teacher_loaded else pre
    return fit(model, pre, train_set, val_set, cfg, out, resume=resume,
               teacher=(teacher_model, teacher_pre), log=log, class_names=train_set.classes or classes)


def report_pair(teacher: str | Path, student: str | Path, val_dir: Path | None,
                teacher_weights: str | Path | None = None,
                teacher_options: SourceOptions | None = None) -> list[list[str]]:
    """Rows (name, variant, params M, GMACs, val top-1) for a teacher and its student."""
    import torch

    from coatnet_edge.models.profile import profile_model
    from coatnet_edge.models.source import load_model
    from coatnet_edge.training.predict import predict_logits, top1

    rows = []
    for role, source, weights, options in (("teacher", teacher, teacher_weights, teacher_options),
                                           ("student", student, None, None)):
        loaded = load_model(source, options, weights=weights)
        prof = profile_model(loaded.net, loaded.preprocess.image_size, loaded.preprocess.channels)
        accuracy = "-"
        if val_dir is not None:
            folder = scan_folder(val_dir, labeled=True, verify=False)
            logits, labels = predict_logits(loaded.net, folder, loaded.preprocess, device=torch.device("cpu"))
            accuracy = f"{top1(logits, labels):.4f}"
        rows.append([role, loaded.variant, f"{prof.params_m:.3f}", f"{prof.gmacs:.4f}", accuracy])
    return rows


def teacher_model_classes(model: nn.Module) -> int:
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "num_classes"):
        return cfg.num_classes
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    raise CoatnetEdgeError("cannot tell how many classes the teacher predicts", fix="pass a CoAtNet checkpoint")


def resolve_splits(data: str | Path, val: str | Path | None) -> tuple[Path, Path | None]:
    """A dataset root with ``train/`` (and ``val/``) inside is split for you; otherwise ``data`` is train."""
    data = Path(data)
    if (data / "train").is_dir():
        return data / "train", Path(val) if val else ((data / "val") if (data / "val").is_dir() else None)
    return data, Path(val) if val else None


def _scan(path: Path, *, labeled: bool | None, purpose: str, log: Log = print) -> ImageFolder:
    if labeled and path.is_dir() and not looks_labeled(path):
        folder = None
    else:
        folder = scan_folder(path, labeled=labeled, verify=True)
    if labeled and (folder is None or not folder.labeled):
        raise CoatnetEdgeError(f"{purpose} needs labels: expected class subfolders root/<class>/<image>",
                               path=path, fix="arrange images by class, or use `distill` (pure KD needs no labels)")
    for line in format_skipped(folder.skipped):
        log(f"warning:{line}")
    return folder


def _scan_val(path: Path | None, classes: list[str]) -> ImageFolder | None:
    if path is None:
        return None
    folder = _scan(path, labeled=True, purpose="validation")
    if classes and folder.classes != list(classes):
        raise CoatnetEdgeError(f"validation classes {folder.classes[:4]}... differ from the training classes "
                               f"{list(classes)[:4]}...", path=path, fix="use a validation folder with the same "
                               "class subfolders")
    return folder


def _build_student(source: str | Path | CoAtNet, num_classes: int, image_size: int | None,
                   data_dir: Path, seed: int) -> tuple[CoAtNet, PreprocessConfig]:
    """A new model from a variant name, or a checkpoint to fine-tune (a new head if classes differ)."""
    import torch

    from coatnet_edge.models.checkpoint import load_checkpoint
    from coatnet_edge.models.coatnet import CoAtNet
    from coatnet_edge.models.registry import create_model

    if isinstance(source, CoAtNet):
        if source.cfg.num_classes != num_classes:
            raise CoatnetEdgeError(f"model has {source.cfg.num_classes} classes, the data {num_classes}",
                                   fix="build the model with num_classes matching the data")
        return source, PreprocessConfig(image_size=source.cfg.image_size)
    path = Path(str(source))
    if path.suffix in (".safetensors", ".pt", ".pth") or is_builtin(source):
        model, info = load_checkpoint(path)
        if model.cfg.num_classes != num_classes:  # fine-tune on new classes: keep the body, fresh head
            state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
            model = CoAtNet(model.cfg.replace(num_classes=num_classes))
            model.load_state_dict(state, strict=False)
        return model, info.preprocess
    pre = builtin_preprocess() if image_size is None and is_builtin_dataset(data_dir) else \
        PreprocessConfig(image_size=image_size or 224)
    torch.manual_seed(seed)  # the initial weights are part of the run's identity
    return create_model(str(source), num_classes=num_classes, image_size=pre.image_size), pre


def _load_teacher(teacher: str | Path | nn.Module, weights: str | Path | None = None,
                  options: SourceOptions | None = None) -> tuple[nn.Module, LoadedModel | None]:
    """The teacher module and its ``LoadedModel`` (None for a bare module: it shares the student's input)."""
    from torch import nn

    from coatnet_edge.models.source import load_model
    from coatnet_edge.models.timm_source import is_timm_source

    if isinstance(teacher, nn.Module):
        return teacher.eval(), None
    path = Path(teacher)
    if not is_builtin(teacher) and not is_timm_source(teacher) and not path.exists():
        raise CoatnetEdgeError("teacher checkpoint not found", path=path,
                               fix="pass --teacher PATH.safetensors (e.g. from `coatnet-edge train`), or "
                                   "--teacher timm:<name> --teacher-weights FILE")
    loaded = load_model(teacher, options, weights=weights)
    return loaded.net.eval(), loaded
