"""Drawing helpers shared by the attention, Grad-CAM and report pictures.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend
switch, no display needed) and come back as HWC uint8 RGB arrays, so the same picture can be written
as a PNG file and as a VisualDL image record.
"""
import os

import cv2
import numpy as np

from ..utils.errors import ConfigError


def new_figure(width_in, height_in, dpi=100):
    """A matplotlib Figure bound to an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_array(fig):
    """Render ``fig``; HWC uint8 RGB."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def save_png(array, path):
    """Write an HWC uint8 RGB (or HW gray) array as a PNG; returns ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    img = np.asarray(array)
    if img.dtype != np.uint8:
        raise ValueError(f"save_png: uint8 image expected, got {img.dtype}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise ConfigError(f"could not write {path}")
    return path


def heat_overlay(image, heat, vmin=None, vmax=None, alpha=0.5):
    """Blend a jet-coloured heat map over an HWC uint8 RGB image (both the same H, W); the heat map is
    scaled from [vmin, vmax] (default: its own range) to the colour map. Returns HWC uint8 RGB."""
    image = np.asarray(image)
    heat = np.asarray(heat, dtype=np.float32)
    if image.shape[:2] != heat.shape:
        raise ValueError(f"heat_overlay: image {image.shape[:2]} and heat map {heat.shape} differ in size")
    lo = float(heat.min()) if vmin is None else float(vmin)
    hi = float(heat.max()) if vmax is None else float(vmax)
    scaled = np.clip((heat - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    colour = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    out = image.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _colorbar(fig, cax, lo, hi, label=None):
    """An opaque jet colour bar for values lo..hi (the overlays themselves are translucent)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    bar = fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap="jet"), cax=cax)
    bar.ax.tick_params(labelsize=6)
    if label:
        bar.set_label(label, fontsize=7)
    return bar


def _show(ax, image, title=None, fontsize=8):
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def heatmap_panel(images, heats, title, captions=None, vmin=None, vmax=None, colorbar_label=None, cell_in=1.6,
                  dpi=100):
    """Two rows: the images, and the heat maps over them (one colour scale for the whole panel, shown
    by a colour bar with the heat maps' own values). ``images``: HWC uint8 RGB, ``heats``: HW float,
    same sizes pairwise. Returns HWC uint8 RGB."""
    n = len(images)
    if n == 0 or n != len(heats):
        raise ValueError(f"heatmap_panel: {n} images and {len(heats)} heat maps")
    lo = min(float(np.min(h)) for h in heats) if vmin is None else float(vmin)
    hi = max(float(np.max(h)) for h in heats) if vmax is None else float(vmax)
    if hi <= lo:
        hi = lo + 1e-6
    width = cell_in * n + 0.9
    height = 2 * cell_in + (0.62 if captions else 0.45)
    fig = new_figure(width, height, dpi)
    grid = fig.add_gridspec(2, n + 1, width_ratios=[1] * n + [0.07], left=0.1 / width, right=1 - 0.6 / width,
                            top=1 - (0.55 if captions else 0.35) / height, bottom=0.05 / height, wspace=0.08,
                            hspace=0.06)
    for i, (img, heat) in enumerate(zip(images, heats)):
        _show(fig.add_subplot(grid[0, i]), img, captions[i] if captions else None, 7)
        ax = fig.add_subplot(grid[1, i])
        ax.imshow(img, interpolation="nearest")
        ax.imshow(heat, cmap="jet", alpha=0.5, vmin=lo, vmax=hi, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
    _colorbar(fig, fig.add_subplot(grid[1, n]), lo, hi, colorbar_label)
    fig.suptitle(title, fontsize=8, y=1 - 0.08 / height, va="top")
    return figure_to_array(fig)


def cam_figure(image, cam, title, dpi=120):
    """The image and its Grad-CAM overlay side by side, titled. Returns HWC uint8 RGB."""
    fig = new_figure(3.9, 2.05, dpi)
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.07], left=0.02, right=0.89, top=0.86, bottom=0.03,
                            wspace=0.06)
    _show(fig.add_subplot(grid[0, 0]), image)
    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(image, interpolation="nearest")
    ax.imshow(cam, cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    _colorbar(fig, fig.add_subplot(grid[0, 2]), 0.0, 1.0)
    fig.suptitle(title, fontsize=7, y=0.98, va="top")
    return figure_to_array(fig)


def image_grid(images, captions, title=None, columns=8, cell_in=1.3, dpi=100):
    """Images in a grid (at most ``columns`` wide, rows filled evenly) with a two-line caption above
    each. Returns HWC uint8 RGB."""
    n = len(images)
    rows = max(1, -(-n // max(1, columns)))
    cols = max(1, -(-n // rows))
    caption_in, title_in, pad_in = 0.34, (0.3 if title else 0.0), 0.05
    width = cell_in * cols + pad_in * (cols + 1)
    height = rows * (cell_in + caption_in) + title_in + pad_in
    fig = new_figure(width, height, dpi)
    for i, (img, cap) in enumerate(zip(images, captions)):
        r, c = divmod(i, cols)
        left = pad_in + c * (cell_in + pad_in)
        bottom = height - title_in - (r + 1) * (cell_in + caption_in) + pad_in
        ax = fig.add_axes([left / width, bottom / height, cell_in / width, (cell_in - pad_in) / height])
        _show(ax, img, cap, 7)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.06 / height, va="top")
    return figure_to_array(fig)
