"""Detection configs (ppcls/det/config.py): ``-o`` overrides, the one-line errors of a bad config, and the
workspace reset between configs. Written against the survivors of `bash tests/mutation.sh det/config.py`."""
import os

import pytest

pytest.importorskip("ppdet")

import ppcls.det  # noqa: E402,F401  (registers the zoo backbones, snapshots the workspace)
from ppcls.det import config as det_config  # noqa: E402
from ppcls.det.config import backbone_name, load_det_config, parse_overrides, reset_workspace  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "ppcls", "configs", "detection", "demo", "faster_rcnn_dla46_c_fpn_digits.yml")


def _error(fn, *args):
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return str(e.value)


@pytest.fixture
def workspace():
    """ppdet's workspace, reset after the test; ask for it before monkeypatch, which is then undone first"""
    from ppdet.core.workspace import global_config
    yield global_config
    reset_workspace()


# -- parse_overrides ------------------------------------------------------------------------------------------
def test_mutation_kills_overrides_values_keys_and_nesting():
    assert parse_overrides(None) == {} and parse_overrides([]) == {}
    assert parse_overrides(["  a.b = 2 ", "c=", "d.e= x ", "f=true", "g={h: 1}"]) == {
        "a": {"b": 2}, "c": "", "d": {"e": "x"}, "f": True, "g": {"h": 1}}
    # a later, deeper key replaces a scalar; keys of one parent share it
    assert parse_overrides(["a=1", "a.b.c=2", "a.b.d=3", "a.e=4"]) == {"a": {"b": {"c": 2, "d": 3}, "e": 4}}
    assert parse_overrides(["a.b=1", "a=5"]) == {"a": 5}
    assert parse_overrides(["x=a=b=c"]) == {"x": "a=b=c"}


@pytest.mark.parametrize("item, message", [
    ("novalue", "-o novalue: expected key=value"),
    ("  spaced  ", "-o spaced: expected key=value"),
    ("=1", "-o =1: empty key"),
    ("a..b=1", "-o a..b=1: empty key"),
    (".a=1", "-o .a=1: empty key"),
    ("a.=1", "-o a.=1: empty key"),
    (" =1", "-o =1: empty key"),
    ("a=[1", "-o a=[1: value is not valid YAML (while parsing a flow sequence)"),
])
def test_mutation_kills_override_errors_name_the_item(item, message):
    assert _error(parse_overrides, ["ok=1", item]) == message


# -- load_det_config ------------------------------------------------------------------------------------------
def test_mutation_kills_config_file_errors(tmp_path, workspace):
    missing = str(tmp_path / "none.yml")
    assert _error(load_det_config, missing) == f"config file not found: {missing}"
    as_json = tmp_path / "det.json"
    as_json.write_text("{}")
    assert _error(load_det_config, str(as_json)) == f"{as_json}: a detection config is a .yml or .yaml file"
    base = tmp_path / "base.yaml"
    base.write_text("_BASE_: ['gone.yml']\narchitecture: FasterRCNN\n")
    msg = _error(load_det_config, str(base))
    assert msg.startswith(f"{base}: _BASE_ file not found: ") and msg.endswith("gone.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("architecture: [FasterRCNN\n")
    assert _error(load_det_config, str(bad)) == f"{bad}: not valid YAML (while parsing a flow sequence)"


def test_mutation_kills_architecture_is_required_and_a_ppdet_architecture(tmp_path, workspace):
    cfg = tmp_path / "det.yml"
    cfg.write_text("num_classes: 3\n")
    assert _error(load_det_config, str(cfg)) == \
        f"{cfg}: architecture: required (FasterRCNN, RetinaNet, MaskRCNN, ...)"
    cfg.write_text("architecture: NoSuchNet\n")
    assert _error(load_det_config, str(cfg)) == f"{cfg}: architecture: 'NoSuchNet' is not a ppdet architecture"
    cfg.write_text("architecture: num_classes\nnum_classes: 3\n")  # a key of the workspace, not a module
    assert _error(load_det_config, str(cfg)) == f"{cfg}: architecture: 'num_classes' is not a ppdet architecture"
    # an override can supply what the file lacks
    cfg.write_text("num_classes: 3\n")
    assert load_det_config(str(cfg), {"architecture": "FasterRCNN"}).architecture == "FasterRCNN"


@pytest.mark.parametrize("make", [list, tuple, lambda opts: parse_overrides(list(opts))])
def test_mutation_kills_overrides_reach_the_config(workspace, make):
    cfg = load_det_config(DEMO, make(["TrainReader.batch_size=3", "DLA46_c.frozen_stages=2", "epoch=7"]))
    assert cfg.epoch == 7 and workspace["TrainReader"]["batch_size"] == 3
    assert workspace["DLA46_c"]["frozen_stages"] == 2


# -- the workspace ----------------------------------------------------------------------------------------------
def test_mutation_kills_reset_keeps_registered_modules_and_drops_config_keys(workspace):
    from ppdet.core.config.schema import SchemaDict
    cfg = load_det_config(DEMO, ["DLA46_c.norm_eval=true"])
    assert cfg.num_classes == 10 and workspace["DLA46_c"]["norm_eval"] is True
    reset_workspace()
    assert "num_classes" not in workspace and "epoch" not in workspace and dict(workspace["TrainReader"]) == {}
    dla = workspace["DLA46_c"]
    assert isinstance(dla, SchemaDict) and dict(dla) == {} and "norm_eval" in dla.schema
    assert dla.pymodule.__name__ == "ppcls.det.backbones"
    # a fresh copy each time: a value set after a reset does not survive the next one
    dla["norm_eval"] = True
    reset_workspace()
    assert dict(workspace["DLA46_c"]) == {} and workspace["DLA46_c"] is not dla
    # the default values of a registered module are still there (SchemaDict falls back to its schema)
    assert workspace["DLA46_c"]["frozen_stages"] == -1


def test_mutation_kills_reset_before_any_snapshot_takes_one(workspace, monkeypatch):
    monkeypatch.setattr(det_config, "_PRISTINE", None)
    workspace["left_by_a_test"] = 1
    reset_workspace()  # no snapshot yet: take it, as things are
    assert workspace["left_by_a_test"] == 1 and det_config._PRISTINE["left_by_a_test"] == 1
    workspace["another"] = 2
    reset_workspace()
    assert "another" not in workspace and workspace["left_by_a_test"] == 1


def test_mutation_kills_backbone_name(tmp_path, workspace):
    cfg = load_det_config(DEMO)
    assert backbone_name(cfg) == "DLA46_c"
    cfg = load_det_config(DEMO, ["FasterRCNN.backbone={name: ReXNet_1_0}"])
    assert backbone_name(cfg) == "ReXNet_1_0"
    plain = tmp_path / "p.yml"
    plain.write_text("architecture: DLA46_c\n")  # a registered module without a backbone
    assert backbone_name(load_det_config(str(plain))) is None


def test_mutation_kills_snapshot_is_what_reset_returns_to(workspace, monkeypatch):
    monkeypatch.setattr(det_config, "_PRISTINE", None)
    workspace["set_before_the_snapshot"] = 3  # a plain value (not a module) in the workspace
    det_config.snapshot_workspace()
    workspace["set_after_the_snapshot"] = 4
    workspace["DLA46_c"]["norm_eval"] = True
    reset_workspace()
    assert workspace["set_before_the_snapshot"] == 3 and "set_after_the_snapshot" not in workspace
    assert dict(workspace["DLA46_c"]) == {}
