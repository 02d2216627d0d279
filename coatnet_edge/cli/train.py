"""``coatnet-edge train`` and ``coatnet-edge distill``: the training options are ``TrainConfig``'s fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coatnet_edge.cli.options import config_from, config_options, library_option, path_option, source_options, stack
from coatnet_edge.cli.output import echo_table
from coatnet_edge.measure.summary import teacher_student_table
from coatnet_edge.models.source_options import SourceOptions
from coatnet_edge.training.config import TrainConfig
from coatnet_edge.training.verbs import distill as run_distill
from coatnet_edge.training.verbs import report_pair
from coatnet_edge.training.verbs import train as run_train

KD_FIELDS = ("kd_alpha", "kd_temperature")  # distillation only
KD_OPTIONS = {"kd_alpha": ("--alpha", "kd_alpha"), "kd_temperature": ("--temperature", "kd_temperature")}
TRAIN_HELP = {
    "epochs": "Training epochs.",
    "batch_size": "Per process.",
    "lr": "Peak AdamW learning rate.",
    "weight_decay": "AdamW weight decay.",
    "warmup_epochs": "Linear warm-up before the cosine decay (epochs, may be fractional).",
    "label_smoothing": "Label smoothing of the cross-entropy.",
    "min_crop_scale": "Random-resized-crop keeps this much of the image area at least.",
    "kd_alpha": "Weight of the KD term with labels (1.0 = pure KD). Unlabeled folders always use pure KD.",
    "kd_temperature": "Softmax temperature of the KD term.",
    "seed": "Seed of initialisation, sampling and augmentation.",
    "workers": "DataLoader worker processes.",
    "max_steps_per_epoch": "Cap steps per epoch (smoke runs).",
    "device": "cpu, cuda or cuda:N.",
    "amp": "bfloat16 autocast.",
}


def _run_options(func: Any) -> Any:
    """Where the data is and where the run goes; options shared by `train` and `distill`."""
    return stack(
        path_option("--data", "data", required=True,
                    help="Image folder; a root holding train/ (and val/) is split for you."),
        path_option("--val", default=None, help="Labeled validation folder."),
        path_option("--out", "out_dir", required=True, help="Run folder: last/best .safetensors, last.state.json."),
        click.option("--image-size", type=int, default=None,
                     help="Input size (default: 64 on the built-in data, else 224 or the checkpoint's)."),
        path_option("--resume", default=None, help="Continue the run in this folder (its last.state.json)."),
    )(func)


@click.command()
@_run_options
@library_option(run_train, "model", "--variant", "variant", type=str,
                help="Variant to train from scratch, or a .safetensors checkpoint to fine-tune.")
@config_options(TrainConfig, TRAIN_HELP, skip=KD_FIELDS)
def train(data: Path, val: Path | None, out_dir: Path, variant: str, image_size: int | None, resume: Path | None,
          **options: Any) -> None:
    """Train or fine-tune a CoAtNet on a labeled folder (root/<class>/<image>).

    AdamW, warm-up + cosine, label smoothing, random-resized-crop + flip, a checkpoint every
    epoch. Runs unchanged under torchrun (DDP): torchrun --nproc-per-node 2 -m coatnet_edge train ...
    """
    result = run_train(data, out=out_dir, model=variant, val=val, image_size=image_size, resume=resume,
                       config=config_from(TrainConfig, options), log=click.echo)
    if result.history:
        click.echo(f"checkpoints: {result.checkpoint} (last), {result.best_checkpoint} (best)")


@click.command()
@_run_options
@click.option("--teacher", required=True,
              help="Teacher: a checkpoint, builtin:teacher, timm:<name> with --teacher-weights, a timm training "
                   "checkpoint (.pth.tar) or a Hugging Face folder.")
@path_option("--teacher-weights", default=None,
             help="Local weights of a timm:<name> teacher (.safetensors or a .pth state dict).")
@source_options(weights=False, what="--teacher", prefix="teacher-", dest="teacher_options")
@library_option(run_distill, "student", type=str, help="Student variant or checkpoint.")
@library_option(run_distill, "labeled", "--labeled/--unlabeled", show_default=False,
                help="Folder layout (default: detect).")
@config_options(TrainConfig, TRAIN_HELP, decls=KD_OPTIONS)
def distill(data: Path, val: Path | None, out_dir: Path, teacher: str, teacher_weights: Path | None,
            teacher_options: SourceOptions, student: str, labeled: bool | None, image_size: int | None,
            resume: Path | None, **options: Any) -> None:
    """Distill a teacher checkpoint into a smaller student.

    On labeled folders: alpha * KL(teacher_T || student_T) * T^2 + (1 - alpha) * cross-entropy.
    On unlabeled folders (flat or nested raw images): pure KD, no labels needed.
    Reports teacher and student top-1 on the validation folder, and both models' size.
    """
    result = run_distill(data, teacher=teacher, out=out_dir, student=student, val=val, labeled=labeled,
                         image_size=image_size, resume=resume, config=config_from(TrainConfig, options),
                         teacher_weights=teacher_weights, teacher_options=teacher_options, log=click.echo)
    rows = report_pair(teacher, result.best_checkpoint, result.val_dir, teacher_weights=teacher_weights,
                       teacher_options=teacher_options)
    echo_table(teacher_student_table(rows))
