"""Losses: cross-entropy on the labeled images of a batch, knowledge distillation from a frozen teacher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from coatnet_edge.data.preprocess import PreprocessConfig
from coatnet_edge.training.torch_data import NO_LABEL

Logits = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, H, W) batch -> (N, classes)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.: KL(teacher_T || student_T) x T^2, so gradients keep their scale across T."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                    reduction="batchmean", log_target=True) * t * t


def teacher_input(x: torch.Tensor, student_pre: PreprocessConfig, teacher_pre: PreprocessConfig) -> torch.Tensor:
    """Re-normalise and resize the student's batch when the teacher was trained on other preprocessing."""
    if (teacher_pre.mean, teacher_pre.std) != (student_pre.mean, student_pre.std):
        def as_t(v: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(v, device=x.device).view(1, -1, 1, 1)

        x = (x * as_t(student_pre.std) + as_t(student_pre.mean) - as_t(teacher_pre.mean)) / as_t(teacher_pre.std)
    if teacher_pre.image_size != x.shape[-1]:
        x = F.interpolate(x, size=(teacher_pre.image_size,) * 2, mode="bicubic", antialias=True,
                          align_corners=False)
    return x


def seen_through(teacher: nn.Module, student_pre: PreprocessConfig, teacher_pre: PreprocessConfig) -> Logits:
    """``teacher`` as a function of the student's batch (it runs on its own preprocessing)."""
    return lambda x: teacher(teacher_input(x, student_pre, teacher_pre))


@dataclass(frozen=True)
class Objective:
    """CE on a batch's labeled images mixed with KD against ``teacher``: ``alpha * KD + (1 - alpha) * CE``.

    Without a teacher it is CE alone; a batch without labels is KD alone (pure distillation).
    """

    teacher: Logits | None = None  # frozen: run without gradients
    kd_alpha: float = 1.0
    temperature: float = 1.0
    label_smoothing: float = 0.0

    def __call__(self, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, KD term detached for logging; 0 without a teacher) for the student's ``logits`` on ``x``."""
        has_label = y != NO_LABEL
        labeled = bool(has_label.any())
        ce = F.cross_entropy(logits[has_label], y[has_label], label_smoothing=self.label_smoothing) if labeled \
            else logits.sum() * 0.0
        if self.teacher is None:
            return ce, torch.zeros(())
        with torch.no_grad():
            teacher_logits = self.teacher(x).float()
        kd = kd_loss(logits.float(), teacher_logits, self.temperature)
        if not labeled:
            return kd, kd.detach()
        return self.kd_alpha * kd + (1 - self.kd_alpha) * ce, kd.detach()
