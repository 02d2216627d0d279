"""``coatnet-edge predict``: top-k labels for images, on an edge device.

Needs only Pillow, NumPy and one runtime (onnxruntime or openvino): the preprocessing and class
names come from the artifact's manifest, and nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from coatnet_edge.data.preprocess import preprocess_file
from coatnet_edge.errors import CoatnetEdgeError
from coatnet_edge.runtime import load_runner
from coatnet_edge.runtime.artifact import artifact_profile


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predict(model: str | Path, images: list[str | Path], *, top_k: int = 5) -> list[dict[str, Any]]:
    """For each image: its path and the ``top_k`` (label, probability) pairs."""
    if not images:
        raise CoatnetEdgeError("no images given", fix="e.g. coatnet-edge predict --model m.onnx photo.jpg")
    if top_k < 1:
        raise CoatnetEdgeError(f"--top-k must be >= 1, got {top_k}", fix="e.g. --top-k 5")
    preprocess, class_names = artifact_profile(model)
    runner = load_runner(model)
    results = []
    for image in images:
        probs = softmax(runner.run(preprocess_file(image, preprocess)[None])[0])
        order = np.argsort(-probs)[:top_k]
        results.append({"image": str(image), "top": [(class_names[i] if i < len(class_names) else str(i),
                                                      float(probs[i])) for i in order]})
    return results
