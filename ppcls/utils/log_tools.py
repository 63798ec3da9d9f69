"""Reading training logs for tools/best.py and tools/eval_visual.py.

The engine writes PaddleClas-format lines (after a ``[YYYY/MM/DD HH:MM:SS] ppcls INFO: `` prefix); the
per-epoch summaries are the ones read here:
    [Train][Epoch 3/120][Avg]top1: 0.12500, top5: 0.40625, CELoss: 4.12345, loss: 4.12345
    [Eval][Epoch 3][Avg]CELoss: 3.12345, loss: 3.12345, top1: 0.31250, top5: 0.61250 (5000 samples)
    [Eval][Epoch 3][Avg]EMA CELoss: ...            (the EMA model's evaluation, kept apart)
Per-iteration lines and ``[best metric: ...]`` lines are skipped. Train summaries have no top1/top5
when mixup or cutmix is on. A log is this project's ``train.log`` or a launch's ``log/workerlog.N``
(rank 0 evaluates the whole validation set and logs it).
"""
import glob
import os
import re

from .errors import ConfigError

_EVAL = re.compile(r"\[Eval\]\[Epoch (\d+)\]\[Avg\](EMA )?(.*)")
_TRAIN = re.compile(r"\[Train\]\[Epoch (\d+)/\d+\]\[Avg\](.*)")
_FIELD = re.compile(r"([A-Za-z_]\w*): ([-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|nan|inf))")
_WORKER = re.compile(r"workerlog\.(\d+)$")


def _lowest_rank(paths):
    return min(paths, key=lambda p: int(_WORKER.search(p).group(1)))


def find_log(path):
    """The log to read: ``path`` itself if it is a file; else, under the folder ``path``, its
    ``train.log``, or the lowest-rank ``workerlog.N``, or the one ``train.log`` one level down
    (e.g. ``output`` holding ``output/<Arch>/train.log``)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise ConfigError(f"--log-dir: not found: {path}")
    if os.path.isfile(os.path.join(path, "train.log")):
        return os.path.join(path, "train.log")
    workers = [p for p in glob.glob(os.path.join(path, "workerlog.*")) if _WORKER.search(p)]
    if workers:
        return _lowest_rank(workers)
    below = sorted(glob.glob(os.path.join(path, "*", "train.log")))
    if len(below) == 1:
        return below[0]
    if len(below) > 1:
        raise ConfigError(f"--log-dir: {path} holds several runs; pick one: "
                          + ", ".join(os.path.dirname(p) for p in below))
    workers = [p for p in glob.glob(os.path.join(path, "*", "workerlog.*")) if _WORKER.search(p)]
    if workers and len({os.path.dirname(p) for p in workers}) == 1:
        return _lowest_rank(workers)
    raise ConfigError(f"--log-dir: no train.log or workerlog.N in {path}")


def parse_log(path):
    """Returns ``{'train': {epoch: {key: value}}, 'eval': {...}, 'eval_ema': {...}}``. A resumed run
    appends to the same log; a repeated epoch keeps its last values."""
    out = {"train": {}, "eval": {}, "eval_ema": {}}
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _EVAL.search(line)
            if m:
                kind, text = ("eval_ema" if m.group(2) else "eval"), m.group(3)
            else:
                m = _TRAIN.search(line)
                if not m:
                    continue
                kind, text = "train", m.group(2)
            out[kind][int(m.group(1))] = {k: float(v) for k, v in _FIELD.findall(text)}
    return out


def best_epochs(parsed, keys=("top1", "top5"), kind="eval"):
    """``{key: (best value, first epoch reaching it)}`` over the evaluated epochs of ``kind``."""
    res = {}
    for key in keys:
        vals = [(e, d[key]) for e, d in sorted(parsed[kind].items()) if key in d]
        if vals:
            best = max(v for _, v in vals)
            res[key] = (best, next(e for e, v in vals if v == best))
    return res


_PLOTS = (("top1", "acc1_plot.png", "Training and validation top-1 accuracy", "acc@1 (%)"),
          ("top5", "acc5_plot.png", "Training and validation top-5 accuracy", "acc@5 (%)"),
          ("loss", "loss_plot.png", "Training and validation loss", "loss"))


def plot_curves(parsed, out_dir):
    """Writes acc1_plot.png, acc5_plot.png (in %, 0-100) and loss_plot.png, each with a training and a
    validation curve where the log has them. Returns the written paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for key, name, title, ylabel in _PLOTS:
        scale = 100.0 if key != "loss" else 1.0
        curves = []
        for kind, label in (("train", "training"), ("eval", "validation")):
            pts = [(e, d[key] * scale) for e, d in sorted(parsed[kind].items()) if key in d]
            if pts:
                curves.append((label, pts))
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, pts in curves:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        if key != "loss":
            ax.set_ylim(0, 100)
        ax.legend(loc="upper right" if key == "loss" else "lower right")
        ax.grid(alpha=0.3)
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
