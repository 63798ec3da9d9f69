"""Evaluation report from predictions: confusion matrix (CSV, PNG), per-class precision / recall /
F1 / support (CSV, markdown) and a gallery of the most confident mistakes.

Everything here is a pure function of numpy arrays (true labels, predicted probabilities or logits),
so a distributed evaluation gathers the predictions of all ranks first and calls it once. The
definitions are scikit-learn's: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 their
harmonic mean, 0 where the denominator is 0; the share of the diagonal is top-1 accuracy.
"""
import csv
import os

import numpy as np

from ..utils.errors import ConfigError
from .render import figure_to_array, image_grid, new_figure, save_png

REPORT_FILES = ("confusion_matrix.csv", "confusion_matrix.png", "per_class.csv", "per_class.md", "mistakes.csv",
                "mistakes.png")


def _labels(labels):
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(f"labels: one class id per sample expected, got shape {y.shape}")
    if y.size and (np.any(y < 0) or np.any(y != np.round(y))):
        raise ConfigError("labels: class ids must be non-negative integers")
    return y.astype(np.int64)


def to_probabilities(scores, logits=None):
    """[N, K] scores -> probabilities. ``logits=None`` decides by the values: rows that are non-negative
    and sum to 1 are taken as probabilities, anything else gets a softmax."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ConfigError(f"scores: [N, K] probabilities or logits expected, got shape {s.shape}")
    if logits is None:
        logits = not (s.size and np.all(s >= 0) and np.allclose(s.sum(axis=1), 1.0, atol=1e-3))
    if not logits:
        return s
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def merge_shards(indices, *arrays):
    """Rows gathered from every rank of a distributed evaluation -> dataset order. ``indices``: [M]
    dataset index of each row, -1 for padding rows (ranks pad to a common length before an
    all_gather); ``arrays``: [M, ...] each. Returns the arrays sorted by index with the padding
    dropped; a repeated index is an error (a sample would count twice)."""
    idx = np.asarray(indices).reshape(-1).astype(np.int64)
    keep = idx >= 0
    order = np.argsort(idx[keep], kind="stable")
    merged = idx[keep][order]
    if merged.size and np.any(merged[1:] == merged[:-1]):
        dup = int(merged[1:][merged[1:] == merged[:-1]][0])
        raise ConfigError(f"merge_shards: sample {dup} was gathered from more than one rank")
    out = []
    for a in arrays:
        a = np.asarray(a)
        if a.shape[0] != idx.size:
            raise ConfigError(f"merge_shards: {idx.size} indices but an array of {a.shape[0]} rows")
        out.append(a[keep][order])
    return (merged, *out)


def confusion_matrix(labels, preds, num_classes):
    """[K, K] int64 counts: row = true class, column = predicted class."""
    y, p = _labels(labels), _labels(preds)
    if y.shape != p.shape:
        raise ConfigError(f"labels ({y.size}) and predictions ({p.size}) differ in length")
    k = int(num_classes)
    if y.size and (y.max() >= k or p.max() >= k):
        raise ConfigError(f"class id {int(max(y.max(), p.max()))} is out of range for {k} classes")
    return np.bincount(y * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def per_class_metrics(cm):
    """Precision, recall, F1 and support per class from a confusion matrix (float64 arrays; support
    int64), 0 where undefined, as scikit-learn's ``precision_recall_fscore_support``."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support.astype(np.float64), out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def class_name_list(class_names, num_classes):
    """``None`` / a list / an {id: name} dict -> a list of K display names (ids where missing)."""
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if isinstance(class_names, dict):
        return [str(class_names.get(i, i)) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    return names[:num_classes] + [str(i) for i in range(len(names), num_classes)]


def summarize(labels, scores, num_classes=None, logits=None):
    """Predictions and numbers of the report: dict with preds, confidence (probability of the
    predicted class), probs, cm, per-class metrics, top1, macro / weighted averages, num_classes."""
    y = _labels(labels)
    probs = to_probabilities(scores, logits)
    if probs.shape[0] != y.size:
        raise ConfigError(f"labels ({y.size}) and scores ({probs.shape[0]}) differ in length")
    k = int(num_classes) if num_classes else max(probs.shape[1], int(y.max()) + 1 if y.size else 0)
    if probs.shape[1] > k:
        raise ConfigError(f"scores have {probs.shape[1]} classes but num_classes is {k}")
    preds = probs.argmax(axis=1).astype(np.int64)
    cm = confusion_matrix(y, preds, k)
    m = per_class_metrics(cm)
    total = int(cm.sum())
    weights = m["support"] / total if total else np.zeros(k)
    avg = {}
    for key in ("precision", "recall", "f1"):
        avg[f"macro_{key}"] = float(m[key].mean()) if k else 0.0
        avg[f"weighted_{key}"] = float((m[key] * weights).sum())
    return dict(preds=preds, confidence=probs[np.arange(y.size), preds], probs=probs, labels=y, cm=cm,
                top1=float(np.trace(cm)) / total if total else 0.0, num_classes=k, samples=total, **m, **avg)


def confusion_matrix_image(cm, class_names=None, title=None, dpi=100):
    """The confusion matrix as a picture (counts, colour by the share of each true class), HWC uint8
    RGB: for a PNG or a VisualDL image record."""
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    names = class_name_list(class_names, k)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    side = min(12.0, max(3.2, 0.42 * k + 1.6))
    fig = new_figure(side + 0.9, side, dpi)
    ax = fig.add_axes([0.2, 0.17, 0.62, 0.72])
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.arange(k)
    label_size = 7 if k <= 20 else 5
    if k <= 50:
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_xticklabels(names, rotation=90, fontsize=label_size)
        ax.set_yticklabels(names, fontsize=label_size)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6 if k <= 15 else 4,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class", fontsize=8)
    ax.set_ylabel("true class", fontsize=8)
    total = int(cm.sum())
    top1 = float(np.trace(cm)) / total if total else 0.0
    ax.set_title(title or f"confusion matrix ({total} samples, top-1 {top1:.4f})", fontsize=9)
    bar = fig.colorbar(im, cax=fig.add_axes([0.85, 0.17, 0.03, 0.72]))
    bar.ax.tick_params(labelsize=6)
    bar.set_label("share of the true class", fontsize=7)
    return figure_to_array(fig)


def most_confident_mistakes(labels, probs, preds=None, max_items=16):
    """Indices of the misclassified samples, most confident (highest predicted probability) first."""
    y = _labels(labels)
    probs = np.asarray(probs)
    preds = probs.argmax(axis=1) if preds is None else np.asarray(preds)
    conf = probs[np.arange(y.size), preds]
    wrong = np.flatnonzero(preds != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")]
    return order[:max_items] if max_items else order


def mistakes_gallery_image(image_paths, labels, probs, class_names=None, max_items=16, columns=8, num_classes=None):
    """A grid of the most confident mistakes (image, true vs predicted class, probability), HWC uint8
    RGB, or None when there is no mistake. ``image_paths[i]``: the file of sample i, or its HWC uint8
    RGB array (in-memory datasets such as CIFAR); unreadable files show as grey squares."""
    from ..inference.pipeline import read_rgb
    y = _labels(labels)
    probs = np.asarray(probs)
    preds = probs.argmax(axis=1)
    idx = most_confident_mistakes(y, probs, preds, max_items)
    if idx.size == 0:
        return None
    names = class_name_list(class_names, num_classes or max(probs.shape[1], int(y.max()) + 1))
    images, captions = [], []
    for i in idx:
        item = image_paths[i]
        if isinstance(item, np.ndarray):
            img = item if item.ndim == 3 else np.repeat(item[..., None], 3, axis=2)
        else:
            img = read_rgb(item) if os.path.isfile(str(item)) else None
        if img is None:
            img = np.full((32, 32, 3), 128, np.uint8)
        images.append(img)
        captions.append(f"true {names[y[i]]}\npred {names[preds[i]]} ({probs[i, preds[i]]:.2f})")
    return image_grid(images, captions, f"most confident mistakes ({idx.size} of {int((preds != y).sum())})", columns)


def _fmt(v):
    return format(float(v), ".10g")


def write_report(out_dir, labels, scores, class_names=None, image_paths=None, num_classes=None, logits=None,
                 max_mistakes=16):
    """Write the evaluation report into ``out_dir``: confusion_matrix.csv / .png, per_class.csv / .md,
    mistakes.csv and (with ``image_paths``: one file or HWC array per sample) mistakes.png. ``scores``: [N, K]
    probabilities or logits (see ``to_probabilities``). Returns the ``summarize`` dict plus
    ``files`` (the paths written)."""
    s = summarize(labels, scores, num_classes, logits)
    k, y, preds, probs = s["num_classes"], s["labels"], s["preds"], s["probs"]
    if image_paths is not None and len(image_paths) != y.size:
        raise ConfigError(f"image_paths ({len(image_paths)}) and labels ({y.size}) differ in length")
    names = class_name_list(class_names, k)
    os.makedirs(out_dir, exist_ok=True)
    files = {}

    path = os.path.join(out_dir, "confusion_matrix.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["true \\ predicted"] + names)
        for i in range(k):
            w.writerow([names[i]] + [int(v) for v in s["cm"][i]])
    files["confusion_matrix.csv"] = path
    files["confusion_matrix.png"] = save_png(confusion_matrix_image(s["cm"], names),
                                             os.path.join(out_dir, "confusion_matrix.png"))

    path = os.path.join(out_dir, "per_class.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class_id", "class_name", "precision", "recall", "f1", "support"])
        for i in range(k):
            w.writerow([i, names[i], _fmt(s["precision"][i]), _fmt(s["recall"][i]), _fmt(s["f1"][i]),
                        int(s["support"][i])])
    files["per_class.csv"] = path

    path = os.path.join(out_dir, "per_class.md")
    lines = ["| class | name | precision | recall | F1 | support |", "|---:|---|---:|---:|---:|---:|"]
    for i in range(k):
        lines.append(f"| {i} | {names[i].replace('|', '/')} | {s['precision'][i]:.4f} | {s['recall'][i]:.4f} | "
                     f"{s['f1'][i]:.4f} | {int(s['support'][i])} |")
    lines.append(f"| | macro avg | {s['macro_precision']:.4f} | {s['macro_recall']:.4f} | {s['macro_f1']:.4f} | "
                 f"{s['samples']} |")
    lines.append(f"| | weighted avg | {s['weighted_precision']:.4f} | {s['weighted_recall']:.4f} | "
                 f"{s['weighted_f1']:.4f} | {s['samples']} |")
    lines += ["", f"top-1 accuracy: {s['top1']:.4f} ({int(np.trace(s['cm']))} / {s['samples']})"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    files["per_class.md"] = path

    idx = most_confident_mistakes(y, probs, preds, 0)
    path = os.path.join(out_dir, "mistakes.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "image", "true", "predicted", "score"])
        for i in idx:
            where = image_paths[i] if image_paths is not None and not isinstance(image_paths[i], np.ndarray) else ""
            w.writerow([int(i), where, names[y[i]], names[preds[i]],
                        _fmt(probs[i, preds[i]])])
    files["mistakes.csv"] = path
    if image_paths is not None:
        gallery = mistakes_gallery_image(image_paths, y, probs, names, max_mistakes, num_classes=k)
        if gallery is not None:
            files["mistakes.png"] = save_png(gallery, os.path.join(out_dir, "mistakes.png"))
    s["files"] = files
    return s
