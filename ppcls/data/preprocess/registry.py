"""Registry of data operators.

Per-image ops (``OPS``) are callables built from ``{Name: {kwargs}}`` config entries. They take and
return one HWC uint8 RGB numpy image (after DecodeImage) until NormalizeImage turns it into float32
CHW/HWC. Batch ops (``BATCH_OPS``) take the list of ``(image, label)`` samples of a batch (images
already CHW float32, labels int) and return ``(images [N,C,H,W] float32, targets [N,K] float32)``.
"""
from ...utils.registry import Registry

OPS = Registry("data op")
BATCH_OPS = Registry("batch op")
register_op = OPS.register
register_batch_op = BATCH_OPS.register
