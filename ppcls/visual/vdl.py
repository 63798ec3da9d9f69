"""VisualDL image records: the same pictures the PNG writers produce, shown by ``visualdl --logdir``
under the Image tab."""
import os

import numpy as np


def add_images(writer, images, step=0):
    """``images``: ``[(tag, HWC uint8 RGB array)]`` written with ``writer.add_image`` at ``step``."""
    for tag, arr in images:
        writer.add_image(tag=tag, img=np.ascontiguousarray(arr, dtype=np.uint8), step=int(step),
                         dataformats="HWC")


def write_images(logdir, images, step=0):
    """Open a ``visualdl.LogWriter`` on ``logdir``, write ``[(tag, array)]`` as image records and
    close it. Returns ``logdir``."""
    from visualdl import LogWriter
    os.makedirs(logdir, exist_ok=True)
    with LogWriter(logdir=logdir) as writer:
        add_images(writer, images, step)
    return logdir
