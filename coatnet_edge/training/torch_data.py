"""The torch side of data loading: a Dataset over an :class:`ImageFolder`, for training only.

Augmentation randomness comes from a generator seeded by (seed, epoch, index), never from a
worker's global state, so the pixels of an epoch do not depend on worker count, process count or
whether the run was resumed.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from coatnet_edge.data.augment import AugmentConfig, train_transform
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.preprocess import PreprocessConfig, load_image, preprocess_image

NO_LABEL = -1
_P = ParamSpec("_P")
_R = TypeVar("_R")


def without_worker_sigchld(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` with PyTorch's DataLoader kept from installing its process-wide SIGCHLD handler.

    PyTorch installs that handler the first time a DataLoader starts workers (and never removes it)
    so that a dead worker fails the loop at once. With it, every child exit signals the main thread;
    on an AMX Xeon VM (kernel 6.18) such a signal, delivered to a main thread that had run AMX kernels,
    made the kernel kill the whole process with SIGSEGV (si_code SI_KERNEL): once at a worker's exit
    mid-QAT, once at a later ``subprocess.run``. Without the handler SIGCHLD is ignored, as by default,
    and PyTorch still finds a dead worker by polling (every 5 s).
    """
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        torch_signals = sys.modules.get("torch.utils.data._utils.signal_handling")  # loaded with torch.utils.data
        was_set = getattr(torch_signals, "_SIGCHLD_handler_set", None)
        if was_set is None:
            return fn(*args, **kwargs)  # another PyTorch: nothing to hold back
        torch_signals._SIGCHLD_handler_set = True  # "already installed": DataLoader skips it
        try:
            return fn(*args, **kwargs)
        finally:
            torch_signals._SIGCHLD_handler_set = was_set

    return wrapper


class FolderDataset(Dataset):
    """(image tensor, label) pairs; label is ``NO_LABEL`` for unlabeled folders."""

    def __init__(self, folder: ImageFolder, preprocess: PreprocessConfig, *, train: bool, seed: int = 0,
                 augment: AugmentConfig | None = None):
        self.samples = folder.samples
        self.preprocess = preprocess
        self.train = train
        self.seed = seed
        self.augment = augment or AugmentConfig()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        img = load_image(sample.path)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            arr = train_transform(img, self.preprocess, rng, self.augment)
        else:
            arr = preprocess_image(img, self.preprocess)
        return torch.from_numpy(arr), NO_LABEL if sample.label is None else sample.label
