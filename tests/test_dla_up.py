"""DLA-Up (the DLA original's segmentation network): exactness against the original on seeded fixtures
(made by tests/fixtures/make_dla_up_fixture.py from ucbdrive/dla), the bilinear up-sampling, the
variants and down ratios, conversion of the original's checkpoints, the base's ImageNet weights."""
import json
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from alignment import FIXTURES, check_model_against_fixture, load_fixture
from ppcls.arch import CARDS, build_model, list_models
from ppcls.arch.backbone.dla_up import DLA_UP_VARIANTS, bilinear_kernel
from ppcls.arch.convert import convert_checkpoint
from ppcls.utils.errors import ConfigError
from ppcls.utils.model_stats import count_macs, count_params

FIXTURE_NAMES = ["dla_up_dla34", "dla_up_dla34_down8", "dla_up_dla34_down16", "dla_up_dla60_down4"]


def _meta(fixture):
    with open(os.path.join(FIXTURES, f"{fixture}.json")) as f:
        return json.load(f)


def _build_for(fixture):
    pm = _meta(fixture)["project_model"]
    return pm["name"], {"class_num": pm["class_num"], "down_ratio": pm["down_ratio"]}


@pytest.mark.parametrize("fixture", [pytest.param(f, marks=[pytest.mark.slow] if "dla60" in f else [])
                                     for f in FIXTURE_NAMES])
def test_matches_original(fixture):
    name, kwargs = _build_for(fixture)
    errs, tol, params, macs, meta = check_model_against_fixture(fixture, name, kwargs)
    assert max(errs) <= tol, errs
    assert params == meta["params"]  # the original's trainable count without its unused base.fc / projections
    assert params + sum(int(np.prod(e["shape"])) for e in meta["manifest"]
                        if e["key"] in meta["unused_keys"] and e["kind"] != "bn_mean" and e["kind"] != "bn_var") \
        == meta["params_including_unused"]
    assert macs == meta["conv_linear_macs_per_image"]


def test_both_outputs_within_1e_4_of_the_original_and_consistent():
    _, weights, x, expected = load_fixture("dla_up_dla34")
    name, kwargs = _build_for("dla_up_dla34")
    model = build_model(dict(name=name, **kwargs))
    from ppcls.arch.convert import convert_state_dict, get_rules
    state, _ = convert_state_dict(model, weights, get_rules(name))
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    model.eval()
    with paddle.no_grad():
        log_probs, logits = model(paddle.to_tensor(x))
    for out, ref in zip((log_probs, logits), expected):
        assert np.abs(out.numpy() - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    # log-probabilities at the input size: they normalise, and are the up-sampled logits' log-softmax
    assert log_probs.shape == [1, 5, 64, 96] and logits.shape == [1, 5, 32, 48]
    np.testing.assert_allclose(paddle.exp(log_probs).sum(axis=1).numpy(), 1.0, atol=1e-5)
    again = F.log_softmax(model.up(logits), axis=1)
    np.testing.assert_allclose(again.numpy(), log_probs.numpy(), atol=1e-6)


def test_bilinear_up_sampling_is_the_originals():
    data = np.load(os.path.join(FIXTURES, "dla_up_dla34.npz"))
    for size in (4, 8, 16, 32):
        np.testing.assert_array_equal(bilinear_kernel(3, size), data[f"bilinear/k{size}"])
    model = build_model({"name": "DLAUp_DLA34", "class_num": 3, "down_ratio": 16})
    # the final x16 up-sampling: bilinear and frozen (not counted, never trained), as in the original
    np.testing.assert_array_equal(model.up.weight.numpy(), data["bilinear/k32"])
    assert model.up.weight.stop_gradient
    # the up-sampling inside the aggregation starts bilinear and is trained
    ida_up = model.dla_up.ida_0.up_1.weight
    assert not ida_up.stop_gradient and ida_up.shape == [256, 1, 4, 4]
    np.testing.assert_array_equal(ida_up.numpy(), np.broadcast_to(data["bilinear/k4"][:1], (256, 1, 4, 4)))


@pytest.mark.parametrize("down_ratio", [2, 4, 8, 16])
def test_each_down_ratio(down_ratio):
    paddle.seed(0)
    model = build_model({"name": "DLAUp_DLA34", "class_num": 4, "down_ratio": down_ratio})
    model.eval()
    with paddle.no_grad():
        log_probs, logits = model(paddle.randn([2, 3, 64, 96]))
    assert log_probs.shape == [2, 4, 64, 96]
    assert logits.shape == [2, 4, 64 // down_ratio, 96 // down_ratio]
    first = int(np.log2(down_ratio))
    # one aggregation per level above the first, the base's levels from stride down_ratio on
    assert [n for n, _ in model.dla_up.named_children()] == [f"ida_{i}" for i in range(5 - first)]
    assert model.base.out_strides == [2 ** i for i in range(first, 6)]


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "DLAUp_DLA34" else [pytest.mark.slow])
                                  for n in DLA_UP_VARIANTS])
def test_variant_shapes_and_card(name):
    assert name in list_models("DLAUp_*")
    model = build_model({"name": name})
    card = CARDS[name]
    assert count_params(model) == card.params
    model.eval()
    with paddle.no_grad():
        log_probs, logits = model(paddle.randn([1, 3, 64, 32]))
    assert log_probs.shape == [1, 19, 64, 32] and logits.shape == [1, 19, 32, 16]
    if name == "DLAUp_DLA34":
        assert count_macs(model, (1, 3, card.input_size, card.input_size)) == card.macs


def test_bad_options_and_inputs():
    with pytest.raises(ConfigError, match="down_ratio=3: DLA-Up aggregates to stride 2, 4, 8 or 16"):
        build_model({"name": "DLAUp_DLA34", "down_ratio": 3})
    with pytest.raises(ConfigError, match="class_num=0"):
        build_model({"name": "DLAUp_DLA34", "class_num": 0})
    with pytest.raises(ConfigError, match="did you mean 'down_ratio'"):
        build_model({"name": "DLAUp_DLA34", "down_ration": 4})
    with pytest.raises(ConfigError, match="base='DLA35'"):
        from ppcls.arch.backbone.dla_up import DLASeg
        DLASeg(base="DLA35")
    model = build_model({"name": "DLAUp_DLA34", "class_num": 2})
    with pytest.raises(ValueError, match="multiples of 32, got 48x64"):
        model(paddle.zeros([1, 3, 48, 64]))


def test_training_step_trains_all_but_the_frozen_up_sampling():
    paddle.seed(1)
    model = build_model({"name": "DLAUp_DLA34", "class_num": 3, "down_ratio": 4})
    model.train()
    x = paddle.randn([2, 3, 32, 32])
    label = paddle.to_tensor(np.random.RandomState(0).randint(0, 3, (2, 32, 32)).astype("int64"))
    opt = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
    losses = []
    for _ in range(3):
        log_probs, _ = model(x)
        loss = F.nll_loss(log_probs, label)  # the original's criterion (NLLLoss2d on output 0)
        loss.backward()
        if not losses:
            assert model.up.weight.grad is None and model.dla_up.ida_0.up_1.weight.grad is not None
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
    np.testing.assert_array_equal(model.up.weight.numpy(), bilinear_kernel(3, 8))


def _torch_training_checkpoint(torch, weights, path):
    """What the original's segment.py saves: a DataParallel state dict inside a training checkpoint."""
    state = {"module." + k: torch.from_numpy(v) for k, v in weights.items()}
    for k in list(state):
        if k.endswith("running_var"):
            state[k[:-len("running_var")] + "num_batches_tracked"] = torch.tensor(5)
    torch.save({"epoch": 2, "arch": "dla34up", "state_dict": state, "best_prec1": 40.0}, path)


def test_convert_original_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    meta, weights, x, expected = load_fixture("dla_up_dla34_down8")
    src = str(tmp_path / "checkpoint.pth.tar")
    _torch_training_checkpoint(torch, weights, src)
    dst, n, dropped = convert_checkpoint("DLAUp_DLA34", src, str(tmp_path / "dla34up"),
                                         arch_kwargs={"class_num": 3, "down_ratio": 8})
    assert sorted(dropped) == sorted(meta["unused_keys"]) and any(k.startswith("base.fc.") for k in dropped)
    model = build_model({"name": "DLAUp_DLA34", "class_num": 3, "down_ratio": 8, "pretrained": dst[:-len(".pdparams")]})
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(x))
    for o, e in zip(out, expected):
        assert np.linalg.norm(o.numpy() - e) / np.linalg.norm(e) < 1e-5


def test_load_base_weights_from_imagenet_checkpoints(tmp_path):
    from ppcls.arch.dla_up import load_base_weights
    # a Paddle DLA34 classifier checkpoint
    paddle.seed(2)
    classifier = build_model({"name": "DLA34"})
    paddle.save(classifier.state_dict(), str(tmp_path / "dla34.pdparams"))
    model = build_model({"name": "DLAUp_DLA34", "class_num": 2})
    fc_before = model.fc[0].weight.numpy().copy()
    n = load_base_weights(model, str(tmp_path / "dla34.pdparams"))
    base_state = model.base.state_dict()
    assert n == len(base_state)
    for k, v in base_state.items():
        np.testing.assert_array_equal(v.numpy(), classifier.state_dict()[k].numpy(), err_msg=k)
    np.testing.assert_array_equal(model.fc[0].weight.numpy(), fc_before)  # the head is untouched
    # the original's ImageNet layout (torch keys, its dead projections), converted on the way
    _, weights, _, _ = load_fixture("dla34")
    np.savez(tmp_path / "dla34_original.npz", **weights)
    load_base_weights(model, str(tmp_path / "dla34_original.npz"))
    np.testing.assert_array_equal(model.base.level5.root.conv.weight.numpy(), weights["level5.root.conv.weight"])
    np.testing.assert_array_equal(model.base.level2.root.bn._variance.numpy(), weights["level2.root.bn.running_var"])
    # another DLA's weights do not fit
    paddle.save(build_model({"name": "DLA46_c"}).state_dict(), str(tmp_path / "dla46.pdparams"))
    with pytest.raises(ConfigError, match="does not fit DLA"):
        load_base_weights(model, str(tmp_path / "dla46.pdparams"))
    with pytest.raises(ConfigError, match="not a DLA-Up model"):
        load_base_weights(classifier, str(tmp_path / "dla34.pdparams"))
