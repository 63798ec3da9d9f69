"""Registry of losses. A loss is an ``nn.Layer`` whose ``forward(output, target)`` returns a scalar
tensor; ``output`` is what the model returns (a tensor, or a list for multi-output models) and
``target`` the batch's labels ([N] int64 class ids, or [N, K] float32 soft targets, or masks)."""
from ..utils.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register
