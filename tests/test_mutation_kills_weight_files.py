"""ppcls.utils.weight_files behaviour that tests/test_weight_formats.py left open, found by mutation testing
(bash tests/mutation.sh utils/weight_files.py): the safetensors header length at its bound, bfloat16 tensors
after the first, and the file each Hugging Face folder error names."""
import json
import os
import struct

import numpy as np
import pytest

from ppcls.utils import weight_files
from ppcls.utils.errors import ConfigError
from ppcls.utils.weight_files import read_hub_folder, read_safetensors


def safetensors_bytes(tensors):
    """A .safetensors file of (name, dtype, shape, raw bytes) written by hand (the format is 8 bytes of header
    length, the JSON header, then the data)."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def bf16(values):
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()


def refused(call, *args):
    with pytest.raises(ConfigError) as e:
        call(*args)
    return str(e.value)


def test_bfloat16_tensors_are_read_from_their_own_offsets(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes([("a", "BF16", [2], bf16([1.0, 2.0])), ("b", "BF16", [2], bf16([3.0, 4.0])),
                                        ("c", "BF16", [1, 2], bf16([5.0, 6.0]))]))
    state = read_safetensors(str(path))
    np.testing.assert_array_equal(state["a"], [1.0, 2.0])
    np.testing.assert_array_equal(state["b"], [3.0, 4.0])
    np.testing.assert_array_equal(state["c"], [[5.0, 6.0]])


def test_a_header_longer_than_the_file_by_one_byte_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    good = safetensors_bytes([("a", "F32", [1], np.float32([1]).tobytes())])
    size = len(good)
    path.write_bytes(struct.pack("<Q", size - 8 + 1) + good[8:])
    assert refused(read_safetensors, str(path)) == (
        f"{path}: corrupt safetensors header: it claims {size - 7} bytes, the file has {size - 8} after the length")


def test_hub_folder_errors_name_the_file(tmp_path):
    (tmp_path / "config.json").write_text("[1]")
    config = os.path.join(str(tmp_path), "config.json")
    assert refused(read_hub_folder, str(tmp_path)) == f"{config}: not a JSON object"
    os.remove(config)
    index = tmp_path / "model.safetensors.index.json"
    for bad in ("", ".", "..", "sub/x.safetensors"):
        index.write_text(json.dumps({"weight_map": {"a": bad}}))
        assert refused(read_hub_folder, str(tmp_path)) == \
            f"{index}: shard names must be file names in the folder, got {bad!r}"
    index.write_text("{")
    assert refused(read_hub_folder, str(tmp_path)).startswith(f"{index}: not a valid shard index (")
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors"}}))
    assert refused(read_hub_folder, str(tmp_path)) == f"{index}: shard file s1.safetensors is missing"
    (tmp_path / "s1.safetensors").write_bytes(safetensors_bytes([("a", "F32", [1], np.float32([1]).tobytes())]))
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors",
                                                "c": "s1.safetensors"}}))
    assert refused(read_hub_folder, str(tmp_path)) == f"{index}: 2 tensors listed in the index are in no shard: b, c"
    assert weight_files._first_line(ValueError("")) == "ValueError"
