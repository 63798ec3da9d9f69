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


def count_paper_flops(model, input_shape=(1, 3, 224, 224)):
    """FLOPs by the rule of the RLA-Net paper's table (its profiler): per convolution, output elements x
    (in_channels / groups x kernel area, +1 with a bias); per BatchNorm, 2 x input elements; per linear
    layer, in_features x output elements; per fixed-window average pool, 1 per output element; per
    adaptive average pool, (input area / output area + 1) per output element; activations, max pools,
    additions and concatenations 0. Per image. Counted per layer call through forward hooks, as that
    profiler does: a shared layer counts at every call, a functional op (e.g. F.adaptive_avg_pool2d)
    not at all."""
    total = [0]
    hooks = []

    def numel(t):
        return int(np.prod(t.shape[1:]))

    def hook(layer, inputs, output):
        x = inputs[0]
        out = output[0] if isinstance(output, (list, tuple)) else output
        if isinstance(layer, (nn.Conv1D, nn.Conv2D)):
            per = int(np.prod(layer.weight.shape[1:])) + (1 if layer.bias is not None else 0)
            total[0] += numel(out) * per
        elif isinstance(layer, nn.Conv2DTranspose):  # weight [in, out / groups, kh, kw]
            w = layer.weight.shape
            per = w[0] // layer._groups * int(np.prod(w[2:])) + (1 if layer.bias is not None else 0)
            total[0] += numel(out) * per
        elif isinstance(layer, nn.layer.norm._BatchNormBase):
            total[0] += 2 * numel(x)
        elif isinstance(layer, nn.Linear):
            total[0] += int(layer.weight.shape[0]) * numel(out)
        elif isinstance(layer, nn.AdaptiveAvgPool2D):
            kernel = int(np.prod(x.shape[2:])) // int(np.prod(out.shape[2:]))
            total[0] += (kernel + 1) * numel(out)
        elif isinstance(layer, (nn.AvgPool2D, nn.AvgPool1D)):
            total[0] += numel(out)

    kinds = (nn.Conv1D, nn.Conv2D, nn.Conv2DTranspose, nn.layer.norm._BatchNormBase, nn.Linear,
             nn.AdaptiveAvgPool2D, nn.AvgPool2D, nn.AvgPool1D)
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, kinds):
            hooks.append(layer.register_forward_post_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.zeros([1] + list(input_shape[1:]), dtype="float32"))
    finally:
        for h in hooks:
            h.remove()
        if was_training:
            model.train()
    return total[0]


def paper_units(params, flops):
    """The RLA paper's printing: params / 2^20 'M'; FLOPs / 2^30 'G' (two decimals) or / 2^20 'M' (one)."""
    p = f"{params / 2 ** 20:.2f}M"
    f = f"{flops / 2 ** 30:.2f}G" if flops >= 2 ** 30 else f"{flops / 2 ** 20:.1f}M"
    return p, f
