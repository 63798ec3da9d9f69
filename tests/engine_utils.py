"""Helpers for engine tests: a tiny generated image dataset and a config that trains on it."""
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(tmp_path, arch="ResNet18", epochs=2, num_classes=3, per_class=40, size=32, extra=None,
                num_workers=0, batch_size=12):
    from datasets import make_synthetic_dataset
    data = os.path.join(str(tmp_path), "data")
    if not os.path.exists(os.path.join(data, "train_list.txt")):
        make_synthetic_dataset(data, num_classes=num_classes, per_class=per_class, size=size)
    norm = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "order": ""}}
    cfg = {
        "_BASE_": [os.path.join(ROOT, "configs", "_base_", "ImageNet.yaml")],
        "Global": {"epochs": epochs, "print_batch_step": 1, "output_dir": os.path.join(str(tmp_path), "output"),
                   "image_shape": [3, size, size], "seed": 7, "device": "cpu"},
        "Arch": {"name": arch, "class_num": num_classes},
        "Optimizer": {"name": "Momentum", "momentum": 0.9,
                      "lr": {"name": "Cosine", "learning_rate": 0.02, "warmup_epoch": 1},
                      "regularizer": {"name": "L2", "coeff": 1e-4}},
        "DataLoader": {
            "Train": {"dataset": {"name": "ImageNetDataset", "image_root": data,
                                  "cls_label_path": os.path.join(data, "train_list.txt"),
                                  "transform_ops": [{"DecodeImage": {"to_rgb": True}},
                                                    {"RandCropImage": {"size": size, "scale": [0.6, 1.0]}},
                                                    {"RandFlipImage": {"flip_code": 1}}, norm]},
                      "sampler": {"name": "DistributedBatchSampler", "batch_size": batch_size,
                                  "shuffle": True, "drop_last": False},
                      "loader": {"num_workers": num_workers, "use_shared_memory": False}},
            "Eval": {"dataset": {"name": "ImageNetDataset", "image_root": data,
                                 "cls_label_path": os.path.join(data, "val_list.txt"),
                                 "transform_ops": [{"DecodeImage": {"to_rgb": True}}, norm]},
                     "sampler": {"name": "DistributedBatchSampler", "batch_size": 5, "shuffle": False},
                     "loader": {"num_workers": 0, "use_shared_memory": False}},
        },
        "Infer": {"infer_imgs": os.path.join(data, "val"), "batch_size": 4,
                  "transforms": [{"DecodeImage": {"to_rgb": True}}, norm, {"ToCHWImage": None}],
                  "PostProcess": {"name": "Topk", "topk": 2, "class_id_map_file": None}},
        "Metric": {"Train": [{"TopkAcc": {"topk": [1, 2]}}], "Eval": [{"TopkAcc": {"topk": [1, 2]}}]},
    }
    if extra:
        from ppcls.utils.config import merge
        cfg = merge(cfg, extra)
    path = os.path.join(str(tmp_path), "cfg.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return path, data


def run_tool(tool, *args, env=None, cwd=None, timeout=600):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args], capture_output=True,
                          text=True, env=e, cwd=cwd or ROOT, timeout=timeout)


def eval_avg(text):
    """(loss, top1, samples) from the last '[Eval]...[Avg]' line."""
    lines = [l for l in text.splitlines() if "[Avg]" in l and "[Eval]" in l]
    assert lines, text[-2000:]
    line = lines[-1]
    top1 = float(re.search(r"top1: ([0-9.]+)", line).group(1))
    loss = float(re.search(r" loss: ([0-9.]+)", line).group(1))
    n = int(re.search(r"\((\d+) samples\)", line).group(1))
    return loss, top1, n


def run_ppcls(*args, cwd=None, timeout=600, env=None):
    """``python -m ppcls ARGS`` with this checkout importable from any working directory."""
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ppcls", *args], capture_output=True, text=True, env=e,
                          cwd=cwd or ROOT, timeout=timeout)
