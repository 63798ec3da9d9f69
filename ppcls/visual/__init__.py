"""Visualisation: attention masks of Residual Attention nets, Grad-CAM for every classifier, and the
evaluation report (confusion matrix, per-class metrics, most confident mistakes), as PNG files and
VisualDL image records. ``main(argv)`` is the command line of ``tools/visualize.py``."""
from .attention import AttentionMask, attention_masks, attention_panel, mask_branches, save_attention_panels
from .cli import build_parser, main
from .gradcam import CamResult, grad_cam, resolve_stage, save_cam_overlays, valid_stages
from .render import figure_to_array, heat_overlay, save_png
from .report import (confusion_matrix, confusion_matrix_image, merge_shards, mistakes_gallery_image,
                     most_confident_mistakes, per_class_metrics, summarize, to_probabilities, write_report)
from .vdl import add_images, write_images

__all__ = ["AttentionMask", "attention_masks", "attention_panel", "mask_branches", "save_attention_panels",
           "CamResult", "grad_cam", "resolve_stage", "save_cam_overlays", "valid_stages",
           "confusion_matrix", "confusion_matrix_image", "merge_shards", "mistakes_gallery_image", "most_confident_mistakes",
           "per_class_metrics", "summarize", "to_probabilities", "write_report",
           "add_images", "write_images", "figure_to_array", "heat_overlay", "save_png", "build_parser", "main"]
