"""The torch side of data loading: a Dataset over an :class:`ImageFolder`, for training only.

Augmentation randomness comes from a generator seeded by (seed, epoch, index), never from a
worker's global state, so the pixels of an epoch do not depend on worker count, process count or
whether the run was resumed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from coatnet_edge.data.augment import AugmentConfig, train_transform
from coatnet_edge.data.folders import ImageFolder
from coatnet_edge.data.preprocess import PreprocessConfig, load_image, preprocess_image

NO_LABEL = -1


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
