"""Data loading: ``build_dataloader`` turns a ``DataLoader.Train`` / ``DataLoader.Eval`` section into a
``paddle.io.DataLoader`` with worker processes and a distributed batch sampler."""
import copy

import numpy as np
import paddle
from paddle.io import BatchSampler, DataLoader, DistributedBatchSampler

from ..utils.errors import ConfigError, unknown_name_error
from ..utils.registry import split_entry
from .dataset import DATASETS
from .preprocess import BATCH_OPS, OPS, build_batch_ops

# both names give the engine's sampler: sharded over the workers in training, every sample once in
# evaluation
_SAMPLERS = ("DistributedBatchSampler", "BatchSampler")
SAMPLER_KEYS = {"name": str, "batch_size": int, "drop_last": bool, "shuffle": bool}
LOADER_KEYS = {"num_workers": int, "use_shared_memory": bool, "persistent_workers": bool, "prefetch_factor": int}


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
    ds_cfg.pop("batch_transform_ops", None)  # applied by the training loop, not the dataset
    name, options = split_entry(ds_cfg, f"{where}.dataset", named_key="name")
    fixed = {k: v for k, v in (("class_num", class_num), ("skip_bad_images", skip_bad_images),
                               ("max_bad_images", max_bad_images)) if v is not None}
    return DATASETS.build(name, options, f"{where}.dataset", name_where=f"{where}.dataset.name", **fixed)


def validate_loader_section(section, where):
    """One ``DataLoader.<part>``: dataset (registered, with its options), transform ops, batch ops,
    sampler and loader keys."""
    from ..utils.config import check_keys
    check_keys(where, section, {"dataset": dict, "sampler": dict, "loader": dict})
    ds = dict((section or {}).get("dataset") or {})
    ops = ds.pop("transform_ops", None)
    batch_ops = ds.pop("batch_transform_ops", None)
    name, options = split_entry(ds, f"{where}.dataset", named_key="name")
    DATASETS.validate(name, options, f"{where}.dataset", extra=("transform_ops",), name_where=f"{where}.dataset.name")
    OPS.validate_entries(ops, f"{where}.dataset.transform_ops")
    BATCH_OPS.validate_entries(batch_ops, f"{where}.dataset.batch_transform_ops", extra=("class_num",))
    sampler = (section or {}).get("sampler")
    check_keys(f"{where}.sampler", sampler, SAMPLER_KEYS)
    if sampler and sampler.get("name", _SAMPLERS[0]) not in _SAMPLERS:
        raise unknown_name_error("sampler", sampler["name"], _SAMPLERS, where=f"{where}.sampler.name")
    check_keys(f"{where}.loader", (section or {}).get("loader"), LOADER_KEYS)


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
