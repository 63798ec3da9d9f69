"""Checks that a training run learned, for the tests that run a config: what a user relies on beyond "it did
not crash". The parameters moved (and frozen ones did not), every loss the engine computed was finite, the loss
falls over a few steps on one fixed batch, and saved weights reload to the same outputs."""
import math

import numpy as np
import paddle


def parameters(model):
    """name -> (a copy of the values, kind): "trainable", "stat" (a BatchNorm running mean / variance, which
    training updates without gradients) or "frozen"."""
    stats = {id(t) for layer in model.sublayers(include_self=True)
             for t in (getattr(layer, "_mean", None), getattr(layer, "_variance", None)) if t is not None}
    return {name: (p.numpy().copy(), "stat" if id(p) in stats else "frozen" if p.stop_gradient else "trainable")
            for name, p in model.named_parameters()}


def biases_before_batchnorm(model):
    """Names of the biases of layers followed by a BatchNorm in a Sequential: the normalisation subtracts
    them again, so their gradient is zero up to rounding and training need not move them."""
    ids = set()
    for seq in model.sublayers(include_self=True):
        if isinstance(seq, paddle.nn.Sequential):
            layers = list(seq.children())
            for a, b in zip(layers, layers[1:]):
                if isinstance(b, paddle.nn.layer.norm._BatchNormBase) and getattr(a, "bias", None) is not None:
                    ids.add(id(a.bias))
    return {n for n, p in model.named_parameters() if id(p) in ids}


def assert_moved(before, model, exempt=()):
    """Every trainable parameter (but those in ``exempt``) and BatchNorm statistic changed; every frozen
    parameter kept its values."""
    after = parameters(model)
    assert after.keys() == before.keys()
    still = [n for n, (v, kind) in before.items()
             if kind != "frozen" and n not in exempt and np.array_equal(v, after[n][0])]
    assert not still, f"{len(still)} of {len(before)} trainable parameters never changed, e.g. {still[:3]}"
    moved = [n for n, (v, kind) in before.items() if kind == "frozen" and not np.array_equal(v, after[n][0])]
    assert not moved, f"frozen parameters changed: {moved[:3]}"


def record_losses(eng):
    """Wrap the engine's training loss (before ``eng.train()``) to keep every step's (logits, targets, loss)."""
    steps, loss_fn = [], eng.train_loss

    def recording(out, targets):
        losses = loss_fn(out, targets)
        logits = out[0] if isinstance(out, (list, tuple)) else out
        steps.append((logits.detach().numpy(), targets.numpy(), float(losses["loss"])))
        return losses
    eng.train_loss = recording
    return steps


def assert_finite(steps):
    assert steps, "the loss was never computed"
    bad = [i for i, (_, _, loss) in enumerate(steps) if not math.isfinite(loss)]
    assert not bad, f"non-finite loss at steps {bad}"


def overfit_losses(eng, steps=6, lr=1e-5, model=None, batches=4):
    """The engine's own step (its model or ``model``, loss, AMP wrapper and optimizer) repeated on one fixed
    batch at a constant, small learning rate (the config's warm-up would start near 0); the losses. The batch joins
    the first ``batches`` of the loader: BatchNorm over 2 images normalises every channel to exactly +-1,
    and on so degenerate a batch the loss is no smooth function of the weights."""
    parts = [b for _, b in zip(range(batches), _cycle(eng.train_loader))]
    images = paddle.concat([p[0] for p in parts])
    labels = paddle.concat([p[1] for p in parts])
    eng.optimizer.set_lr_scheduler(paddle.optimizer.lr.StepDecay(learning_rate=lr, step_size=10 ** 9))
    model = model or eng.model
    model.train()
    # dropout draws a new mask every step, so on its own the loss of a fixed batch need not fall; without
    # it (BatchNorm still on the batch's statistics) the loss is a function of the weights alone
    for layer in model.sublayers():
        if isinstance(layer, (paddle.nn.Dropout, paddle.nn.Dropout2D, paddle.nn.Dropout3D, paddle.nn.AlphaDropout)):
            layer.eval()
    losses = []
    for _ in range(steps):
        with eng.amp.autocast():
            out = model(images)
        loss = eng.train_loss(out, labels)["loss"]
        eng.amp.backward(loss)
        eng.amp.step(eng.optimizer)
        eng.optimizer.clear_grad()
        losses.append(float(loss))
    return losses


def _cycle(loader):
    while True:
        yield from loader


def assert_learns(losses):
    assert all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0], f"the loss did not fall on a fixed batch: {losses}"


def assert_reloads_to_same_outputs(model, make_model, state, images):
    """``state`` (a reloaded state dict) in a fresh ``make_model()`` gives ``model``'s eval outputs."""
    fresh = make_model()
    missing, unexpected = fresh.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    fresh.eval()
    with paddle.no_grad():
        np.testing.assert_allclose(fresh(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-6)
