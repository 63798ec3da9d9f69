"""Data loading: ``build_dataloader`` turns a ``DataLoader.Train`` / ``DataLoader.Eval`` section into a
``paddle.io.DataLoader`` with worker processes and a distributed batch sampler."""
import copy

import numpy as np
import paddle
from paddle.io import BatchSampler, DataLoader, DistributedBatchSampler

from ..utils.errors import ConfigError
from .dataset import DATASETS
from .preprocess import build_batch_ops

_SAMPLERS = ("DistributedBatchSampler", "BatchSampler")


class ShardedEvalBatchSampler(BatchSampler):
    """Evaluation batches for one rank: samples rank, rank + W, rank + 2W, ... with no padding, so
    that the ranks together see every sample exactly once (metrics are summed across ranks)."""

    def __init__(self, dataset, batch_size, num_replicas=1, rank=0):
        self.indices = list(range(rank, len(dataset), num_replicas))
        self.batch_size = batch_size

    def __iter__(self):
        for i in range(0, len(self.indices), self.batch_size):
            yield self.indices[i:i + self.batch_size]

    def __len__(self):
        return (len(self.indices) + self.batch_size - 1) // self.batch_size


class ResumableBatchSampler(BatchSampler):
    """Wraps the training batch sampler so a run resumed mid-epoch skips the batches it already
    trained on without loading them (``skip`` applies to the next iteration only)."""

    def __init__(self, inner):
        self.inner = inner
        self.skip = 0

    def set_epoch(self, epoch):
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(self.inner):
            if i >= skip:
                yield batch

    def __len__(self):
        return len(self.inner)


class InProcessLoader:
    """The loader for ``num_workers: 0``: loads each batch when asked, in this thread. (Paddle's
    single-process DataLoader prefetches in a background thread, where a dataset error leaves the
    training loop waiting forever.)"""

    def __init__(self, dataset, batch_sampler):
        self.dataset = dataset
        self.batch_sampler = batch_sampler

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        for indices in self.batch_sampler:
            samples = [self.dataset[i] for i in indices]
            yield [paddle.to_tensor(np.stack([s[k] for s in samples])) for k in range(len(samples[0]))]


def build_dataset(section, where, class_num=None, skip_bad_images=True, max_bad_images=1000):
    ds_cfg = copy.deepcopy(section.get("dataset") or {})
    name = ds_cfg.pop("name", None)
    if name is None:
        raise ConfigError(f"{where}.dataset.name: required")
    cls = DATASETS.get(name, where=f"{where}.dataset.name")
    ds_cfg.pop("batch_transform_ops", None)
    import inspect
    params = inspect.signature(cls.__init__).parameters
    for key, value in (("class_num", class_num), ("skip_bad_images", skip_bad_images),
                       ("max_bad_images", max_bad_images)):
        if key in params and key not in ds_cfg and value is not None:
            ds_cfg[key] = value
    return cls(**ds_cfg)


def build_dataloader(section, mode, class_num=None, seed=None, rank=0, world_size=1,
                     skip_bad_images=True, max_bad_images=1000):
    """Returns ``(loader, dataset, batch_ops)``. ``batch_ops`` (mixup/cutmix) run on the device in the
    training loop; call ``dataset.set_epoch(epoch)`` before each epoch (augmentations are seeded per
    sample from Global.seed, the epoch and the index)."""
    where = f"DataLoader.{mode}"
    if not section:
        raise ConfigError(f"{where}: missing")
    dataset = build_dataset(section, where, class_num, skip_bad_images, max_bad_images)
    sampler_cfg = dict(section.get("sampler") or {})
    name = sampler_cfg.pop("name", "DistributedBatchSampler")
    if name not in _SAMPLERS:
        from ..utils.errors import unknown_name_error
        raise unknown_name_error("sampler", name, _SAMPLERS, where=f"{where}.sampler.name")
    batch_size = sampler_cfg.get("batch_size", 64)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"{where}.sampler.batch_size: positive int, got {batch_size!r}")
    if mode == "Train":
        sampler = DistributedBatchSampler(dataset, batch_size=batch_size, num_replicas=world_size, rank=rank,
                                          shuffle=sampler_cfg.get("shuffle", True),
                                          drop_last=sampler_cfg.get("drop_last", False))
        if len(sampler) == 0:
            raise ConfigError(f"{where}: {len(dataset)} samples give no full batch of {batch_size} "
                              f"on {world_size} workers with drop_last")
        sampler = ResumableBatchSampler(sampler)
    else:
        sampler = ShardedEvalBatchSampler(dataset, batch_size, world_size, rank)
    loader_cfg = dict(section.get("loader") or {})
    num_workers = int(loader_cfg.get("num_workers", 0))
    if hasattr(dataset, "set_seed"):
        dataset.set_seed(seed)
    if num_workers > 0:
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, return_list=True,
                            use_shared_memory=bool(loader_cfg.get("use_shared_memory", True)),
                            persistent_workers=bool(loader_cfg.get("persistent_workers", False)),
                            prefetch_factor=int(loader_cfg.get("prefetch_factor", 2)))
    else:
        loader = InProcessLoader(dataset, sampler)
    batch_ops = None
    if mode == "Train":
        batch_ops = build_batch_ops((section.get("dataset") or {}).get("batch_transform_ops"), class_num)
    return loader, dataset, batch_ops
