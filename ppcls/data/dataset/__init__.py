"""Datasets. Importing this package registers every dataset."""
from .registry import DATASETS, register_dataset
from . import imagenet, cifar, seg_dataset  # noqa: F401  (register)
from .common import BadImageError, ImageDataset
from .cifar import Cifar10, Cifar100
from .imagenet import ImageFolderDataset, ImageNetDataset
