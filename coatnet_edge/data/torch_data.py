"""The torch side of data loading: a Dataset over an :class:`ImageFolder`, for training only.

Augmentation randomness comes from a generator seeded by (seed, epoch, index), never from a
worker's global state, so the pixels of an epoch do not depend on worker count, process count or
whether the run was resumed.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data._utils import signal_handling

from coatnet_edge.data.augment import AugmentConfig, train_transform
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.preprocess import PreprocessConfig, load_image, preprocess_image

NO_LABEL = -1
_P = ParamSpec("_P")
_R = TypeVar("_R")


def restores_sigchld(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Leave the process's SIGCHLD handler as it was found once ``fn``'s DataLoader workers are gone.

    PyTorch installs a process-wide SIGCHLD handler the first time a DataLoader starts workers and
    never removes it, so after an in-process ``train``/``distill``/``qat`` every later child exit
    (any ``subprocess.run`` of the caller) interrupts the main thread. On an AMX Xeon VM (kernel 6.18)
    that signal, delivered to a main thread that had run AMX kernels, made the kernel kill the whole
    process with SIGSEGV (si_code SI_KERNEL). Restoring the handler removes the trigger; PyTorch
    installs it again for the next loader that starts workers.
    """
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)  # signal handlers can only be set from the main thread
        previous = signal.getsignal(signal.SIGCHLD)
        try:
            return fn(*args, **kwargs)
        finally:
            if previous is not None and signal.getsignal(signal.SIGCHLD) is not previous:
                signal.signal(signal.SIGCHLD, previous)
                signal_handling._SIGCHLD_handler_set = False

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
