"""Datasets. Importing this package registers every dataset."""
import importlib

from .registry import DATASETS, register_dataset
from . import imagenet, cifar  # noqa: F401
from .common import BadImageError, ImageDataset
from .cifar import Cifar10, Cifar100
from .imagenet import ImageFolderDataset, ImageNetDataset

for _mod in ("seg_dataset",):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{_mod}":
            raise
