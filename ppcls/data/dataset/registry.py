from ...utils.registry import Registry
DATASETS = Registry("dataset")
register_dataset = DATASETS.register
