"""Checkpoint layouts of timm (huggingface/pytorch-image-models), mapped onto this project's names.

Plain functions for the converter core to register as layouts (``Rules(detect=, rename=, transform=)``):

- ``detect_timm_dla(keys)``, ``detect_timm_rexnet(keys)``: whether a checkpoint's key set is in that
  layout, so the user never has to say which one a file is;
- ``timm_rexnet_key(key)``: the rename, timm key -> project key;
- ``timm_rexnet_transform(project_key, array, target_shape)``: the one layout change beyond the
  core's generic ones.
``project_model_for(architecture)`` turns the ``architecture`` of a timm ``config.json``
(``rexnet_100`` or ``rexnet_100.nav_in1k``) into this project's model name.

DLA: timm's keys and shapes are ucbdrive's (the classifier is the same 1x1 convolution ``fc``); the only
difference is that timm, like this project, builds no ``project`` layer in non-leaf trees. So the
mapping is the identity (no rename) and nothing is dropped; what tells the layouts apart is exactly
those ``project`` keys.

ReXNet: timm names its modules (``stem``, ``features.<n>.conv_exp / conv_dw / se / conv_pwl``, the final
``features.<N>`` conv, ``head.fc``); this project follows clovaai's numbered Sequentials, in which the
activations take positions too, and ends in a 1x1 convolution where timm has a Linear.
"""
import re

from ..backbone.rexnet import rexnet_channels

TIMM_ARCHITECTURES = {
    "dla34": "DLA34", "dla46_c": "DLA46_c", "dla46x_c": "DLA46x_c", "dla60x_c": "DLA60x_c",
    "dla60": "DLA60", "dla60x": "DLA60x", "dla102": "DLA102", "dla102x": "DLA102x",
    "dla102x2": "DLA102x2", "dla169": "DLA169",
    "rexnet_100": "ReXNet_1_0", "rexnet_130": "ReXNet_1_3", "rexnet_150": "ReXNet_1_5",
    "rexnet_200": "ReXNet_2_0", "rexnet_300": "ReXNet_3_0",
}


def project_model_for(architecture):
    """This project's model name for a timm architecture (a pretrained tag after '.' is ignored), or None."""
    if not isinstance(architecture, str):
        return None
    return TIMM_ARCHITECTURES.get(architecture.split(".", 1)[0])


# -- DLA -------------------------------------------------------------------------------------------
_DLA_REQUIRED = ("base_layer.0.weight", "level0.0.weight", "level1.0.weight", "level5.root.conv.weight")
_PROJECT_KEY = re.compile(r"^(.*)\.project\.")


def _nonleaf_projections(keys):
    """ucbdrive's ``project`` keys of non-leaf trees: those whose tree's ``tree1`` is itself a tree
    (has a ``root`` or a ``tree1`` below it). timm and this project have none."""
    keys = list(keys)
    trees = {m.group(1) for m in map(_PROJECT_KEY.match, keys) if m}
    nonleaf = {t for t in trees
               if any(k.startswith((f"{t}.tree1.root.", f"{t}.tree1.tree1.")) for k in keys)}
    return [k for k in keys if (m := _PROJECT_KEY.match(k)) and m.group(1) in nonleaf]


def detect_timm_dla(keys):
    """DLA keys without the non-leaf ``project`` layers that only ucbdrive's files carry."""
    keys = set(keys)
    return all(k in keys for k in _DLA_REQUIRED) and not _nonleaf_projections(keys)


# -- ReXNet ----------------------------------------------------------------------------------------
# (in, out, expansion t, stride, use_se) per block, as the project builds them; t and SE do not depend
# on the width, and timm decides them the same way (no expansion in the first block, SE from stage 3)
_REXNET_BLOCKS = rexnet_channels()[1]
# the project's features Sequential: stem conv, bn, SiLU, then the blocks, then the final conv and bn
_REXNET_FIRST_BLOCK = 3
_REXNET_FINAL_CONV = len(_REXNET_BLOCKS) + _REXNET_FIRST_BLOCK
_TIMM_REXNET_FIXED = {"stem.conv": "features.0", "stem.bn": "features.1", "head.fc": "output.1",
                      # timm's final 1x1 ConvNormAct is features.<number of blocks>
                      f"features.{len(_REXNET_BLOCKS)}.conv": f"features.{_REXNET_FINAL_CONV}",
                      f"features.{len(_REXNET_BLOCKS)}.bn": f"features.{_REXNET_FINAL_CONV + 1}"}
_TIMM_REXNET_BLOCK = re.compile(r"^features\.(\d+)\.(conv_exp|conv_dw|se|conv_pwl)\.")


def detect_timm_rexnet(keys):
    keys = set(keys)
    return "stem.conv.weight" in keys and any(_TIMM_REXNET_BLOCK.match(k) for k in keys)


def _rexnet_block_map(index):
    """timm's sub-modules of block ``index`` -> the project's ``features.<i>.out.<j>`` paths.

    The project's block is one Sequential in which activations take positions too: [expand conv, bn,
    SiLU] when expanding, depthwise conv, bn, [SE], ReLU6, project conv, bn; the SE is its own
    Sequential ``fc``: conv, bn, ReLU, conv, Sigmoid."""
    _, _, t, _, use_se = _REXNET_BLOCKS[index]
    expands = t != 1
    out = f"features.{index + _REXNET_FIRST_BLOCK}.out"
    dw = 3 if expands else 0
    se = dw + 2
    pwl = se + use_se + 1  # after the depthwise pair, the SE (if any) and ReLU6
    table = {"conv_dw.conv": f"{out}.{dw}", "conv_dw.bn": f"{out}.{dw + 1}",
             "conv_pwl.conv": f"{out}.{pwl}", "conv_pwl.bn": f"{out}.{pwl + 1}"}
    if expands:
        table.update({"conv_exp.conv": f"{out}.0", "conv_exp.bn": f"{out}.1"})
    if use_se:
        table.update({"se.fc1": f"{out}.{se}.fc.0", "se.bn": f"{out}.{se}.fc.1", "se.fc2": f"{out}.{se}.fc.3"})
    return {f"features.{index}.{name}": target for name, target in table.items()}


def _timm_rexnet_modules():
    modules = dict(_TIMM_REXNET_FIXED)
    for index in range(len(_REXNET_BLOCKS)):
        modules.update(_rexnet_block_map(index))
    return modules


# timm module path -> project module path, for every module of ReXNet v1 (any width)
TIMM_REXNET_MODULES = _timm_rexnet_modules()


def timm_rexnet_key(key):
    """timm's ReXNet key -> this project's (clovaai's) key; ``None`` (kept, then reported as unexpected)
    for a key of no ReXNet v1 module. Maps the module path and keeps the last component, so the core's
    BatchNorm renames (``running_mean`` -> ``_mean``) may come before or after."""
    module, _, param = key.rpartition(".")
    target = TIMM_REXNET_MODULES.get(module)
    return None if target is None else f"{target}.{param}"


def timm_rexnet_transform(project_key, array, target_shape):
    """timm's classifier is a Linear [classes, features]; the project's (clovaai's) a 1x1 conv."""
    if project_key == "output.1.weight" and array.ndim == 2 and list(target_shape[2:]) == [1, 1]:
        return array.reshape(array.shape + (1, 1))
    return array
