"""safe_pickle behaviour that the property tests in tests/test_properties.py left open, found by mutation
testing (bash tests/mutation.sh utils/safe_pickle.py): the nesting limit at its edge, object arrays wherever
they sit, persistent ids, unregistered extension codes, Python 2 strings, the error messages, and load()."""
import copyreg
import pickle

import numpy as np
import pytest

from ppcls.utils import safe_pickle
from ppcls.utils.errors import ConfigError
from ppcls.utils.safe_pickle import RefusedObject, load, loads

PY2_STRING = b"\x80\x02U\x03\xe9ab."  # protocol 2 SHORT_BINSTRING: a Python 2 str holding a latin-1 byte


def refused(data, where="w.pdparams", **kwargs):
    with pytest.raises(ConfigError) as e:
        loads(data, where, **kwargs)
    return str(e.value)


def nested(levels, kind):
    obj = [] if kind == "list" else {}
    for _ in range(levels - 1):
        obj = [obj] if kind == "list" else {"k": obj}
    return obj


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_nesting_limit_is_100_levels_below_the_top(kind):
    ok = nested(101, kind)  # the innermost container sits 100 levels below the top
    assert loads(pickle.dumps(ok, protocol=2), "w.pdparams") == ok
    assert refused(pickle.dumps(nested(102, kind), protocol=2)) == \
        "w.pdparams: nested more than 100 levels deep: not a state file"


@pytest.mark.parametrize("wrap", [lambda a: a, lambda a: {"w": {"x": a}}, lambda a: [1, (2, a)]])
def test_object_arrays_are_refused_wherever_they_sit(wrap):
    data = pickle.dumps(wrap(np.array([1, "a"], dtype=object)), protocol=2)
    assert refused(data, "m.pdparams") == \
        "m.pdparams: holds an array of Python objects, which a state file never does; refused"


def test_a_mapping_with_attributes_is_refused_with_the_file_named():
    inner = pickle.dumps({"x": 1}, protocol=2)
    data = b"\x80\x02ccollections\nOrderedDict\n)R" + inner[2:-1] + b"b."
    assert refused(data, "od.pdparams") == ("od.pdparams: holds a mapping with attributes set on it, which a state "
                                            "file never does; refused")


def test_persistent_ids_are_refused():
    assert refused(b"P0\n.") == \
        "w.pdparams: unreadable or truncated file (persistent references are not part of these formats)"


def test_an_unregistered_extension_code_is_refused_by_number():
    code = 0x7A11
    copyreg.add_extension("h7_mutation_probe", "fire", code)  # with any code registered the opcodes are read
    try:
        message = refused(b"\x80\x02\x82\x09)R.", "ext.pdparams")
    finally:
        copyreg.remove_extension("h7_mutation_probe", "fire", code)
    assert message.startswith("ext.pdparams: refusing to load copyreg.extension code 9, which a file never holds")


def test_refused_object_names_what_was_asked_for():
    e = RefusedObject("os", "system")
    assert (str(e), e.qualname) == ("os.system", "os.system")
    assert isinstance(e, pickle.UnpicklingError)


def test_python2_strings_are_read_as_latin1_and_the_encoding_is_the_callers():
    assert loads(PY2_STRING, "w") == "éab"
    assert loads(PY2_STRING, "w", encoding="bytes") == b"\xe9ab"
    assert refused(PY2_STRING, encoding="ascii").startswith("w.pdparams: unreadable or truncated file (")


def test_the_refusal_names_the_kind_of_file():
    data = b"cos\nsystem\n(S'x'\ntR."
    assert refused(data).startswith("w.pdparams: refusing to load os.system, which a file never holds ")
    assert refused(data, what="CIFAR batch").startswith(
        "w.pdparams: refusing to load os.system, which a CIFAR batch never holds ")
    assert refused(b"", what="CIFAR batch") == "w.pdparams: unreadable or truncated CIFAR batch (Ran out of input)"


@pytest.mark.parametrize("error,shown", [
    (RuntimeError(), "RuntimeError"),  # no message: its type
    (ValueError("  "), "ValueError"),
    (ValueError("first line\nsecond line"), "first line"),
    (ValueError("x" * 300), "x" * 200),
])
def test_unreadable_files_show_one_short_line_of_the_error(monkeypatch, error, shown):
    def fail(self):
        raise error
    monkeypatch.setattr(safe_pickle._RestrictedUnpickler, "load", fail)
    assert refused(b"N.") == f"w.pdparams: unreadable or truncated file ({shown})"


def test_load_reads_the_file_and_names_it(tmp_path):
    path = tmp_path / "w.pdparams"
    path.write_bytes(pickle.dumps({"a": np.arange(3)}, protocol=2))
    out = load(str(path))
    assert list(out) == ["a"] and np.array_equal(out["a"], np.arange(3))
    path.write_bytes(PY2_STRING)
    assert load(str(path)) == "éab"
    assert load(str(path), encoding="bytes") == b"\xe9ab"
    path.write_bytes(b"cos\nsystem\n(S'x'\ntR.")
    with pytest.raises(ConfigError, match=f"^{path}: refusing to load os.system, which a file never holds"):
        load(str(path))
    with pytest.raises(ConfigError, match=f"^{path}: refusing to load os.system, which a CIFAR batch never holds"):
        load(str(path), what="CIFAR batch")
