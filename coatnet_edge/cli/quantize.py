"""``coatnet-edge quantize``: the INT8 options are ``QuantizeOptions``' fields (and ``QatConfig``'s for QAT).

``quantization_options`` and ``quantize_inputs`` are shared with ``export --int8``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coatnet_edge.calibration.options import QatConfig, QuantizeOptions
from coatnet_edge.calibration.quantize import quantize as run_quantize
from coatnet_edge.cli.options import (
    config_from,
    config_options,
    library_option,
    model_source_options,
    path_option,
    stack,
)
from coatnet_edge.cli.output import echo_lines, echo_table
from coatnet_edge.measure.summary import int8_evaluation_table, quantize_lines
from coatnet_edge.models.source_options import SourceOptions

QUANTIZE_HELP = {
    "method": "ptq: NNCF post-training quantization of the ONNX graph (seconds); qat: NNCF quantization-aware "
              "fine-tuning with distillation from the FP32 model (minutes).",
    "preset": "tensorrt: symmetric signed INT8, zero points 0, per-channel weights (runs everywhere); "
              "openvino: asymmetric activations for OpenVINO's CPU kernels.",
    "scheme": "auto: quantize with each --candidate and keep the first (the plain NNCF path) unless another is more "
              "faithful to FP32 beyond its paired 95 % interval on held-out images (the calibration folder beyond "
              "the calibration sample, and a corrupted copy); hybrid: conv stages as a "
              "CNN, attention stages keep LayerNorm/Softmax/residuals float; cnn: NNCF's defaults over the whole "
              "graph; transformer: NNCF's transformer model type throughout.",
    "candidates": "A candidate --scheme auto measures (repeatable; narrows the set; the first is the baseline): an "
                  "NNCF scheme (cnn: NNCF's plain defaults) "
                  "[+smoothquant | +shift: 1x1 Conv/MatMul/depthwise inputs centred per channel, paid back exactly], "
                  "or modelopt: NVIDIA Model Optimizer's ONNX PTQ, TensorRT's own Q/DQ placer "
                  "(optional: pip install '.[modelopt]').",
    "score_size": "Most held-out images (beyond the calibration sample) the candidates are scored on, and the "
                  "accuracy budget fitted on without --eval-dir.",
    "calib_size": "Images drawn from --calib-dir.",
    "seed": "Seed of the calibration/evaluation samples (and of QAT).",
    "smooth_quant": "NNCF SmoothQuant (acts with --scheme transformer).",
    "ignored_patterns": "Regex over ONNX node names to keep float (repeatable).",
    "max_drop": "Accuracy budget in top-1 points (labeled images) or disagreement points with FP32 (unlabeled), "
                "fitted on --eval-dir, else on the calibration folder beyond the calibration sample: the most "
                "sensitive layers return to float until it holds.",
    "eval_size": "Images drawn from --eval-dir (or from the held-out images for the budget).",
    "sensitivity": "Write the per-layer sensitivity ranking (CSV + bar plot) even without --max-drop.",
    "max_float_layers": "At most this many layers return to float for --max-drop.",
    "budget_order": "The order --max-drop returns layers to float in: sensitivity (most logit SQNR recovered "
                    "first) or per-ms (most recovered per millisecond the layer costs in float, each layer's cost "
                    "timed in OpenVINO on this CPU; a few seconds per candidate layer).",
}


def quantization_options(*, calib_required: bool) -> Any:
    """The folders, ``QuantizeOptions`` and QAT settings of `quantize` (and of `export --int8`)."""
    return stack(
        path_option("--calib-dir", required=calib_required,
                    help="A few hundred representative images (class subfolders or flat)."),
        config_options(QuantizeOptions, QUANTIZE_HELP, decls={"ignored_patterns": ("--ignore", "ignored_patterns"),
                                                              "candidates": ("--candidate", "candidates")}),
        path_option("--eval-dir", default=None,
                    help="Images to fit the budget on and measure the final drop on (not the calibration images; "
                         "default for the budget: the calibration folder beyond the calibration sample)."),
        path_option("--train-dir", default=None, help="QAT training images, labeled or not (default: --calib-dir)."),
        library_option(QatConfig, "epochs", "--qat-epochs", "qat_epochs", help="QAT fine-tuning epochs."),
        library_option(QatConfig, "lr", "--qat-lr", "qat_lr", help="QAT learning rate (AdamW)."),
    )


def quantize_inputs(values: dict[str, Any]) -> dict[str, Any]:
    """Parsed quantization options (taken out of ``values``) -> keyword arguments of ``quantize()``."""
    options = config_from(QuantizeOptions, values)
    qat_config = QatConfig(epochs=values.pop("qat_epochs"), lr=values.pop("qat_lr"), seed=options.seed)
    folders = {name: values.pop(name) for name in ("calib_dir", "eval_dir", "train_dir")}
    return {**folders, "options": options, "qat_config": qat_config}


@click.command()
@click.option("--model", "model", required=True,
              help="Checkpoint (.safetensors, builtin:student, ...), timm:<name> with --weights, a timm training "
                   "checkpoint (.pth.tar) or a Hugging Face folder (config.json + model.safetensors).")
@model_source_options
@quantization_options(calib_required=True)
@path_option("--out", "out_dir", required=True, help="Folder for the FP32 and INT8 ONNX files and their manifests.")
def quantize(model: str, source_options: SourceOptions, out_dir: Path, **values: Any) -> None:
    """INT8 quantization (NNCF PTQ or QAT) to a Q/DQ ONNX file that ONNX Runtime, OpenVINO and
    TensorRT all run. Writes OUT/<name>.fp32.onnx, OUT/<name>.int8.onnx and their manifests.

    \b
    Examples:
      coatnet-edge quantize --model ft.safetensors --calib-dir images/ --out int8/
      coatnet-edge quantize --model ft.safetensors --calib-dir train/ --max-drop 0.3 --out int8/
      coatnet-edge quantize --model ft.safetensors --calib-dir train/ --method qat --qat-epochs 3 --out int8/
      coatnet-edge quantize --model output/train/model_best.pth.tar --calib-dir images/ --out int8/   # timm train.py
      coatnet-edge quantize --model hf_folder/ --calib-dir images/ --out int8/   # timm save_for_hf
    """
    result = run_quantize(model, out=out_dir, source_options=source_options, log=click.echo,
                          **quantize_inputs(values))
    echo_lines(quantize_lines(result.int8_onnx, result.manifest))
    table = int8_evaluation_table(result.manifest)
    if table is not None:
        echo_table(table)
