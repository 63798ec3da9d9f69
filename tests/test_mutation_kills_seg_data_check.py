"""The PaddleSeg dataset check (ppcls/seg/data_check.py): each bad line of a file list is one error naming
the list file, the line and the culprit; the config section check names the config key. Written against the
survivors of `bash tests/mutation.sh seg/data_check.py`."""
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("paddleseg")

from ppcls.seg.data_check import check_dataset_config, check_list  # noqa: E402
from ppcls.utils.errors import ConfigError  # noqa: E402


def _pair(root, stem, label, size=(8, 6), image_mode="RGB"):
    """An image of ``size`` (width, height) and its label array, under root/img."""
    (root / "img").mkdir(exist_ok=True)
    Image.new(image_mode, size, 90 if image_mode == "L" else (90, 90, 90)).save(root / "img" / f"{stem}.jpg")
    (label if isinstance(label, Image.Image) else Image.fromarray(np.asarray(label, np.uint8))).save(
        root / "img" / f"{stem}.png")
    return f"img/{stem}.jpg img/{stem}.png"


def _list(root, lines, name="list.txt"):
    path = root / name
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def _error(*args, **kw):
    with pytest.raises(ConfigError) as e:
        check_list(*args, **kw)
    return str(e.value)


def _label(value=1, shape=(6, 8)):
    label = np.zeros(shape, np.uint8)
    label[1:3, 2:5] = value
    return label


def test_mutation_kills_good_lists_count_their_samples(tmp_path):
    lines = [_pair(tmp_path, "a", _label(1)), _pair(tmp_path, "b", _label(2)), "",
             _pair(tmp_path, "c", _label(255), image_mode="L")]
    assert check_list(_list(tmp_path, lines[:2]), str(tmp_path), num_classes=3) == 2
    # a palette label gives its indices (as PaddleSeg reads it), a grey image is an image
    palette = Image.fromarray(_label(2)).convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    lines.append(_pair(tmp_path, "d", palette))
    assert check_list(_list(tmp_path, lines[:2] + lines[3:]), str(tmp_path), num_classes=3) == 4
    # another separator, and an ignore index other than 255
    lines = [_pair(tmp_path, "e", _label(9)).replace(" ", "|")]
    assert check_list(_list(tmp_path, lines), str(tmp_path), 3, ignore_index=9, separator="|") == 1


def test_mutation_kills_missing_and_empty_lists(tmp_path):
    assert _error(str(tmp_path / "none.txt"), str(tmp_path), 2) == f"file list not found: {tmp_path / 'none.txt'}"
    empty = _list(tmp_path, [])
    assert _error(empty, str(tmp_path), 2) == f"{empty}: the file list has no samples"


@pytest.mark.parametrize("line, found", [("img/a.jpg", 1), ("img/a.jpg img/a.png img/a.png", 3),
                                         ("img/a.jpg  img/a.png", 3), ("   ", 0)])
def test_mutation_kills_column_count_is_named(tmp_path, line, found):
    good = _pair(tmp_path, "a", _label())
    path = _list(tmp_path, [good, line])
    assert _error(path, str(tmp_path), 2) == (f"{path}:2: expected 2 columns 'image label', found {found}: "
                                              f"{line.strip()!r}")


def test_mutation_kills_long_lines_are_cut_in_the_message(tmp_path):
    line = "x" * 100
    path = _list(tmp_path, [line])
    assert _error(path, str(tmp_path), 2, separator=",") == (f"{path}:1: expected 2 columns 'image,label', found 1: "
                                                             f"{'x' * 80!r}")


def test_mutation_kills_missing_files_are_named(tmp_path):
    good = _pair(tmp_path, "a", _label())
    path = _list(tmp_path, [good, "img/none.jpg img/a.png"])
    assert _error(path, str(tmp_path), 2) == f"{path}:2: image file not found: {tmp_path / 'img' / 'none.jpg'}"
    path = _list(tmp_path, ["img/a.jpg img/none.png"])
    assert _error(path, str(tmp_path), 2) == f"{path}:1: label file not found: {tmp_path / 'img' / 'none.png'}"


def test_mutation_kills_unreadable_files_are_named(tmp_path):
    _pair(tmp_path, "a", _label())
    (tmp_path / "img" / "broken.png").write_bytes(b"not an image")
    path = _list(tmp_path, ["img/a.jpg img/broken.png"])
    msg = _error(path, str(tmp_path), 2)
    assert msg.startswith(f"{path}:1: cannot read ") and "broken.png" in msg


def test_mutation_kills_colour_labels_sizes_and_values(tmp_path):
    rgb = Image.fromarray(np.zeros((6, 8, 3), np.uint8))
    path = _list(tmp_path, [_pair(tmp_path, "a", rgb)])
    label = tmp_path / "img" / "a.png"
    assert _error(path, str(tmp_path), 2) == (f"{path}:1: label {label} has 3 channels; a label is one channel of "
                                              f"class ids (a grey or palette PNG)")
    path = _list(tmp_path, [_pair(tmp_path, "a", _label(shape=(8, 6)))])  # transposed: 6 wide, 8 high
    assert _error(path, str(tmp_path), 2) == (f"{path}:1: label {label} is 6x8 but image "
                                              f"{tmp_path / 'img' / 'a.jpg'} is 8x6 (width x height)")
    values = _label(1)
    values[0, :] = [2, 3, 4, 5, 6, 7, 8, 9]
    values[5, 0], values[5, 1] = 10, 255
    path = _list(tmp_path, [_pair(tmp_path, "a", values)])
    assert _error(path, str(tmp_path), 2) == (f"{path}:1: label {label} has values 2, 3, 4, 5, 6, 7, 8, 9 ... "
                                              f"outside 0..1 (num_classes 2; ignore_index 255)")
    assert _error(path, str(tmp_path), 9, ignore_index=10) == (
        f"{path}:1: label {label} has values 9, 255 outside 0..8 (num_classes 9; ignore_index 10)")
    assert check_list(path, str(tmp_path), 11) == 1  # 255 is the ignore index, 0..10 are classes


def test_mutation_kills_negative_label_values(tmp_path):
    label = np.zeros((6, 8), np.int32)
    label[0, 0] = -1
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 6)).save(tmp_path / "img" / "a.jpg")
    Image.fromarray(label).save(tmp_path / "img" / "a.tif")  # 32-bit signed ids: a TIFF can hold them
    path = _list(tmp_path, ["img/a.jpg img/a.tif"])
    assert _error(path, str(tmp_path), 2) == (f"{path}:1: label {tmp_path / 'img' / 'a.tif'} has values -1 "
                                              f"outside 0..1 (num_classes 2; ignore_index 255)")


# -- a config's dataset section -------------------------------------------------------------------------------
def _section(tmp_path, **kw):
    line = _pair(tmp_path, "a", _label(2))
    cfg = {"type": "Dataset", "dataset_root": str(tmp_path), "num_classes": 3,
           "train_path": _list(tmp_path, [line, line], "train.txt"), "val_path": _list(tmp_path, [line], "val.txt")}
    cfg.update(kw)
    return cfg


def test_mutation_kills_dataset_section_is_checked_by_mode(tmp_path):
    cfg = _section(tmp_path)
    assert check_dataset_config(cfg, "train", "train_dataset") == 2
    assert check_dataset_config(cfg, "val", "val_dataset") == 1
    # the list is read with the section's settings
    cfg = _section(tmp_path, num_classes="2")
    with pytest.raises(ConfigError, match=r"values 2 outside 0\.\.1 \(num_classes 2; ignore_index 255\)"):
        check_dataset_config(cfg, "train", "train_dataset")
    assert check_dataset_config(dict(cfg, ignore_index="2"), "train", "train_dataset") == 2
    line = _pair(tmp_path, "a", _label(2)).replace(" ", ";")
    cfg = _section(tmp_path, separator=";", train_path=_list(tmp_path, [line], "semi.txt"))
    assert check_dataset_config(cfg, "train", "train_dataset") == 1


def test_mutation_kills_other_dataset_types_are_left_to_paddleseg(tmp_path):
    assert check_dataset_config({"type": "Cityscapes", "dataset_root": "none"}, "train", "x") is None
    assert check_dataset_config(None, "train", "x") is None
    assert check_dataset_config(["Dataset"], "train", "x") is None


@pytest.mark.parametrize("key, value", [("dataset_root", None), ("dataset_root", ""), ("num_classes", None),
                                        ("train_path", ""), ("train_path", None)])
def test_mutation_kills_required_keys_are_named(tmp_path, key, value):
    cfg = _section(tmp_path)
    cfg[key] = value
    with pytest.raises(ConfigError) as e:
        check_dataset_config(cfg, "train", "train_dataset")
    assert str(e.value) == f"train_dataset.{key}: required by type Dataset"
    # what the other mode needs is not required here
    cfg = _section(tmp_path)
    del cfg["train_path"]
    assert check_dataset_config(cfg, "val", "val_dataset") == 1


def test_mutation_kills_dataset_root_must_be_a_directory(tmp_path):
    cfg = _section(tmp_path, dataset_root=str(tmp_path / "train.txt"))
    with pytest.raises(ConfigError) as e:
        check_dataset_config(cfg, "val", "val_dataset")
    assert str(e.value) == f"val_dataset.dataset_root: not a directory: {tmp_path / 'train.txt'}"


def test_mutation_kills_eight_bad_values_are_all_shown(tmp_path):
    values = _label(1)
    values[0, :] = [2, 3, 4, 5, 6, 7, 8, 9]
    path = _list(tmp_path, [_pair(tmp_path, "a", values)])
    assert _error(path, str(tmp_path), 2) == (f"{path}:1: label {tmp_path / 'img' / 'a.png'} has values 2, 3, 4, 5, "
                                              f"6, 7, 8, 9 outside 0..1 (num_classes 2; ignore_index 255)")


def test_mutation_kills_the_section_s_default_separator_is_one_space(tmp_path):
    line = _pair(tmp_path, "a", _label(2))
    cfg = _section(tmp_path, train_path=_list(tmp_path, [line.replace(" ", "\t")], "tabs.txt"))
    with pytest.raises(ConfigError) as e:
        check_dataset_config(cfg, "train", "train_dataset")
    assert str(e.value) == (f"{cfg['train_path']}:1: expected 2 columns 'image label', found 1: "
                            f"'img/a.jpg\\timg/a.png'")
