"""Parameter and multiply-accumulate counts, without paddle.flops (which fails with numpy >= 2.4)."""
import numpy as np
import paddle
import paddle.nn as nn


def count_params(model, trainable_only=True):
    """Number of trainable parameters (BatchNorm running statistics are not trainable)."""
    total = 0
    for p in model.parameters():
        if trainable_only and p.stop_gradient:
            continue
        total += int(np.prod(p.shape)) if len(p.shape) else 1
    return total


def _conv_macs(layer, out):
    w = layer.weight.shape  # [out_c, in_c / groups, kh, kw]
    return int(np.prod(out.shape[1:])) * int(np.prod(w[1:]))


def _linear_macs(layer, out):
    return int(np.prod(out.shape[1:])) * int(layer.weight.shape[0])


def count_macs(model, input_shape=(1, 3, 224, 224), per_image=True):
    """Multiply-accumulates of every executed convolution and linear layer (bias excluded)."""
    total = [0]
    hooks = []

    def hook(layer, inputs, output):
        outs = output if isinstance(output, (list, tuple)) else [output]
        if isinstance(layer, (nn.Conv1D, nn.Conv2D, nn.Conv2DTranspose)):
            if isinstance(layer, nn.Conv2DTranspose):
                x = inputs[0]
                w = layer.weight.shape  # [in_c, out_c / groups, kh, kw]
                total[0] += int(np.prod(x.shape[1:])) * int(np.prod(w[1:]))
            else:
                total[0] += _conv_macs(layer, outs[0])
        elif isinstance(layer, nn.Linear):
            total[0] += _linear_macs(layer, outs[0])

    for layer in model.sublayers(include_self=True):
        if isinstance(layer, (nn.Conv1D, nn.Conv2D, nn.Conv2DTranspose, nn.Linear)):
            hooks.append(layer.register_forward_post_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros(list(input_shape), dtype="float32"))
    finally:
        for h in hooks:
            h.remove()
        if was_training:
            model.train()
    return total[0] // input_shape[0] if per_image else total[0]
