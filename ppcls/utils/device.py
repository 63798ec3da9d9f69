"""Device selection, CPU threads, seeds and the distributed context."""
import os
import random

import numpy as np
import paddle

from .errors import ConfigError

DEVICES = ("auto", "cpu", "gpu", "xpu", "npu", "mlu", "ascend", "intel_gpu", "mps")


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def select_device(name="auto"):
    """Sets and returns the device string. ``auto`` picks a GPU when this Paddle build has CUDA and one is
    visible, else the CPU; an explicit device that this build or machine lacks is an error."""
    name = (name or "auto").lower()
    if name not in DEVICES:
        from .errors import nearest
        hint = nearest(name, DEVICES)
        raise ConfigError(f"Global.device: unknown device '{name}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if name == "auto":
        name = "gpu" if has_gpu else "cpu"
    if name == "gpu" and not has_gpu:
        raise ConfigError("Global.device=gpu: this Paddle build has no CUDA or no GPU is visible "
                          "(install paddlepaddle-gpu, or use Global.device=cpu)")
    if name not in ("cpu", "gpu"):
        if not paddle.device.is_compiled_with_custom_device(name) and not getattr(paddle.device, f"is_compiled_with_{name}", lambda: False)():
            raise ConfigError(f"Global.device={name}: this Paddle build does not support it")
    if name == "gpu":
        local = int(os.environ.get("FLAGS_selected_gpus", os.environ.get("PADDLE_LOCAL_RANK", "0")).split(",")[0] or 0)
        paddle.set_device(f"gpu:{local}")
    else:
        paddle.set_device(name)
    return name


def set_cpu_threads(n=0, world_size=1):
    """Paddle's CPU kernels use one thread unless told; default: the available cores shared out among
    the local worker processes."""
    if not n:
        n = max(1, available_cores() // max(1, int(os.environ.get("PADDLE_LOCAL_SIZE", world_size) or 1)))
    paddle.base.core.set_num_threads(int(n))
    return int(n)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    paddle.seed(seed)


def rng_state():
    """The random streams (Python, numpy, Paddle) as plain values and an array, so a checkpoint's
    states file holds nothing the safe loader refuses."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [int(version), [int(v) for v in mt], gauss],
            # int64: paddle.save does not take uint32 arrays
            "numpy": [str(kind), np.asarray(keys, dtype=np.int64), int(pos), int(has_gauss), float(cached)],
            "paddle": [list(s.__getstate__()) for s in paddle.get_rng_state()]}


def set_rng_state(state):
    if not state:
        return
    if not isinstance(state, dict) or not {"python", "numpy", "paddle"} <= set(state):
        raise ConfigError("checkpoint states: the saved random state is not in this version's format")
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    generators = []
    for values in state["paddle"]:
        # GeneratorState has no constructor in Python; it restores from its own __getstate__ tuple
        g = paddle.base.core.GeneratorState.__new__(paddle.base.core.GeneratorState)
        g.__setstate__(tuple(values))
        generators.append(g)
    paddle.set_rng_state(generators)


def dist_info():
    return int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))
