"""Reading training logs (this project's train.log, or log/workerlog.N of a launch) for tools/best.py
and tools/eval_visual.py."""
import glob
import os
import re

from .errors import ConfigError

_EVAL = re.compile(r"\[Eval\]\[Epoch (\d+)\]\[Avg\](?!EMA )(.*)")
_TRAIN = re.compile(r"\[Train\]\[Epoch (\d+)/\d+\]\[Avg\](.*)")
_FIELD = re.compile(r"([A-Za-z_][\w]*): ([-+0-9.eE]+|nan|inf)")


def find_log(path):
    """A log file: ``path`` itself, else ``train.log`` or ``workerlog.0`` under it (searched recursively)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise ConfigError(f"--log-dir: not found: {path}")
    for pattern in ("train.log", "workerlog.0", "*/train.log", "*/workerlog.0", "**/train.log", "**/workerlog.*"):
        hits = sorted(glob.glob(os.path.join(path, pattern), recursive=True))
        if hits:
            return hits[0]
    raise ConfigError(f"--log-dir: no train.log or workerlog.N under {path}")


def parse_log(path):
    """Returns {'train': {epoch: {key: value}}, 'eval': {epoch: {key: value}}}; a resumed run's repeated
    epochs keep their last values."""
    out = {"train": {}, "eval": {}}
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            for kind, pat in (("eval", _EVAL), ("train", _TRAIN)):
                m = pat.search(line)
                if m:
                    out[kind][int(m.group(1))] = {k: float(v) for k, v in _FIELD.findall(m.group(2))}
                    break
    return out


def best_epochs(parsed, keys=("top1", "top5")):
    """{key: (best value, first epoch reaching it)} over the eval epochs."""
    res = {}
    for key in keys:
        vals = [(e, d[key]) for e, d in sorted(parsed["eval"].items()) if key in d]
        if vals:
            best = max(v for _, v in vals)
            res[key] = (best, next(e for e, v in vals if v == best))
    return res


def plot_curves(parsed, out_dir):
    """acc1_plot.png, acc5_plot.png (train and validation) and loss_plot.png (train and validation)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for key, name, title in (("top1", "acc1_plot.png", "Training and validation acc@1"),
                             ("top5", "acc5_plot.png", "Training and validation acc@5"),
                             ("loss", "loss_plot.png", "Training and validation loss")):
        fig, ax = plt.subplots(figsize=(6, 4))
        drew = False
        for kind, label in (("train", "training"), ("eval", "validation")):
            pts = [(e, d[key]) for e, d in sorted(parsed[kind].items()) if key in d]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
                drew = True
        if not drew:
            plt.close(fig)
            continue
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("acc" if key != "loss" else "loss")
        ax.legend(loc="upper right" if key == "loss" else "lower right")
        ax.grid(alpha=0.3)
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
