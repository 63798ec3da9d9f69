"""Property-based tests (hypothesis) of every parser of user input: the safe unpickler, ``-o`` overrides and
YAML values, label lists and file lists, and the service's request decoding. Each test's docstring names what
it guards. Examples are few per property (``max_examples``) so that the file stays a few seconds."""
import base64
import copyreg
import json
import os
import pickle
import struct
import sys

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hypothesis_home  # noqa: F401  (before any strategy runs)
from ppcls.utils import safe_pickle
from ppcls.utils.errors import ConfigError

# The same examples on every run (derandomize): a failure in the suite reproduces; no example database, so
# nothing is written outside the temporary folders. To search further: HYPOTHESIS_EXPLORE=1 (random examples).
_EXPLORE = bool(os.environ.get("HYPOTHESIS_EXPLORE"))
FEW = settings(max_examples=40, deadline=None, database=None, derandomize=not _EXPLORE,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=120, deadline=None, database=None, derandomize=not _EXPLORE,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- the safe unpickler ------------------------------------------------------------------------------------
PROBE = "h6_unpickle_probe"  # a module of the test's own: importing it or calling its function leaves a file


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """An importable module whose import, and whose ``fire()``, each write a marker file."""
    marker = tmp_path / "ran"
    (tmp_path / f"{PROBE}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r} + '.import').write_text('imported')\n"
        "def fire(*args, **kwargs):\n"
        f"    pathlib.Path({str(marker)!r} + '.call').write_text('called')\n"
        "    return 0\n"
        "class Thing:\n"
        "    def __init__(self, *a, **k):\n"
        "        fire()\n"
        "    def __setstate__(self, state):\n"
        "        fire()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PROBE, raising=False)
    yield marker
    sys.modules.pop(PROBE, None)


def _nothing_ran(marker):
    return not os.path.exists(str(marker) + ".import") and not os.path.exists(str(marker) + ".call") \
        and PROBE not in sys.modules


def _proto(p):
    return b"\x80" + bytes([p]) if p >= 2 else b""


def _unicode(s, p):
    """Push the string ``s`` as protocol ``p`` writes it."""
    raw = s.encode("utf-8")
    if p == 0:
        return b"V" + s.encode("raw-unicode-escape") + b"\n"
    if p >= 4 and len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def _empty_tuple(p):
    return b"(t" if p == 0 else b")"


def _global(module, name, p, how):
    if how == "GLOBAL":
        return b"c" + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"
    return _unicode(module, p) + _unicode(name, p) + b"\x93"  # STACK_GLOBAL


# every way a pickle imports (GLOBAL, STACK_GLOBAL, INST) and calls (REDUCE, OBJ, NEWOBJ, NEWOBJ_EX,
# BUILD's __setstate__) what it names, with the first protocol that has the opcodes
ATTACKS = {
    "GLOBAL+REDUCE": (0, lambda m, n, p: _global(m, n, p, "GLOBAL") + _empty_tuple(p) + b"R"),
    "INST": (0, lambda m, n, p: b"(i" + m.encode("utf-8") + b"\n" + n.encode("utf-8") + b"\n"),
    "GLOBAL+OBJ": (1, lambda m, n, p: b"(" + _global(m, n, p, "GLOBAL") + b"o"),
    "GLOBAL+BUILD": (0, lambda m, n, p: _global(m, n, p, "GLOBAL") + b"}b"),
    "GLOBAL+NEWOBJ": (2, lambda m, n, p: _global(m, n, p, "GLOBAL") + b")\x81"),
    "STACK_GLOBAL+REDUCE": (4, lambda m, n, p: _global(m, n, p, "STACK") + b")R"),
    "STACK_GLOBAL+NEWOBJ_EX": (4, lambda m, n, p: _global(m, n, p, "STACK") + b")}\x92"),
    # inside a container, after plain values: refused all the same, nothing before it is returned
    "nested": (2, lambda m, n, p: b"}(" + _unicode("w", p) + b"K\x01" + _unicode("x", p)
               + _global(m, n, p, "GLOBAL") + b")Ru"),
}


def _attack(module, name, protocol, kind):
    first, build = ATTACKS[kind]
    assume(protocol >= first)
    return _proto(protocol) + build(module, name, protocol) + b"."


DANGEROUS = [("os", "system"), ("posix", "system"), ("nt", "system"), ("builtins", "eval"), ("builtins", "exec"),
             ("builtins", "getattr"), ("builtins", "__import__"), ("builtins", "open"), ("__builtin__", "eval"),
             ("subprocess", "Popen"), ("subprocess", "check_output"), ("pickle", "loads"), ("numpy", "load"),
             ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"), ("numpy._core.numeric", "_frombuffer"),
             ("runpy", "run_path"), ("importlib", "import_module"), ("paddle", "load"), ("shutil", "rmtree"),
             ("builtins", "tuple.__class__"), ("numpy", "ndarray.tofile"), ("numpy.core.multiarray", "_reconstruct.x"),
             ("numpy._core.multiarray", " _reconstruct"), ("Builtins", "list"), ("collections", "ordereddict"),
             (PROBE, "fire"), (PROBE, "Thing")]
_line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1, max_size=30)
_dotted = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,12}(\.[A-Za-z_][A-Za-z0-9_]{0,12}){0,3}\Z")
_near_miss = st.sampled_from(sorted(safe_pickle.ALLOWED_GLOBALS)).flatmap(
    lambda mn: st.sampled_from([(mn[0] + "x", mn[1]), (mn[0], mn[1] + "_"), (mn[0].upper(), mn[1]),
                                (mn[0], mn[1] + ".__init__"), (mn[0] + ".sub", mn[1]), (mn[1], mn[0])]))
REFUSED_PAIRS = st.one_of(st.sampled_from(DANGEROUS), _near_miss, st.tuples(_dotted, _dotted),
                          st.tuples(_line, _line)).filter(lambda mn: mn not in safe_pickle.ALLOWED_GLOBALS)


@SOME
@given(pair=REFUSED_PAIRS, protocol=st.integers(0, 5), kind=st.sampled_from(sorted(ATTACKS)))
def test_unpickler_refuses_every_global_outside_the_allow_list_and_runs_nothing(probe, pair, protocol, kind):
    """Guards: a crafted weights file cannot import or call anything the allow-list does not name, by any
    opcode that imports or calls, under any protocol; the refusal names what was asked for."""
    module, name = pair
    data = _attack(module, name, protocol, kind)
    modules_before = set(sys.modules)
    with pytest.raises(ConfigError) as e:
        safe_pickle.loads(data, "crafted.pdparams")
    msg = str(e.value)
    assert msg.startswith("crafted.pdparams: ") and "\n" not in msg
    # INST reads its lines as ASCII: a name outside it is unreadable before any lookup
    assert f"refusing to load {module}.{name}" in msg or (not (module + name).isascii() and "unreadable" in msg), msg
    assert _nothing_ran(probe)
    assert set(sys.modules) - modules_before == set()


@pytest.mark.parametrize("kind,protocol", [(k, p) for k in sorted(ATTACKS) for p in range(ATTACKS[k][0], 6)])
def test_unpickler_never_imports_or_calls_the_probe(probe, protocol, kind):
    """Guards: every opcode path, every protocol, against a module that would leave a trace if imported."""
    for name in ("fire", "Thing"):
        with pytest.raises(ConfigError, match=f"refusing to load {PROBE}.{name}"):
            safe_pickle.loads(_proto(protocol) + ATTACKS[kind][1](PROBE, name, protocol) + b".", "w.pdparams")
    assert _nothing_ran(probe)


@pytest.mark.parametrize("opcode,width", [(b"\x82", 1), (b"\x83", 2), (b"\x84", 4)])
def test_unpickler_refuses_registered_extension_codes_even_when_cached(probe, opcode, width):
    """Guards: EXT1/EXT2/EXT4 name a global by a number registered with copyreg; the C unpickler resolves a
    code it has seen before from a cache without asking find_class, so the loader must refuse them itself."""
    code = {1: 0xF1, 2: 0xF1F2, 4: 0x0FF1F2F3}[width]
    import h6_unpickle_probe  # noqa: F401  (the attacker's target is a module already loaded in the process)
    os.remove(str(probe) + ".import")
    copyreg.add_extension(PROBE, "fire", code)
    try:
        data = b"\x80\x02" + opcode + code.to_bytes(width, "little") + b")R."
        assert pickle.loads(data) == 0  # the test's own bytes: warms copyreg's cache as any other user would
        os.remove(str(probe) + ".call")
        with pytest.raises(ConfigError, match=f"refusing to load {PROBE}.fire"):
            safe_pickle.loads(data, "ext.pdparams")
        assert not os.path.exists(str(probe) + ".call")
    finally:
        copyreg.remove_extension(PROBE, "fire", code)


def test_unpickler_refuses_object_arrays_hidden_in_a_mapping_attribute():
    """Guards: BUILD on an OrderedDict sets attributes the value walk never visits; an object array (which a
    state file never holds) must not ride in there."""
    inner = pickle.dumps({"x": np.array([1, "a"], dtype=object)}, protocol=2)
    data = b"\x80\x02ccollections\nOrderedDict\n)R" + inner[2:-1] + b"b."
    with pytest.raises(ConfigError, match="attributes set on it"):
        safe_pickle.loads(data, "od.pdparams")


PLAIN_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
                          st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))
ARRAYS = hnp.arrays(st.sampled_from(["float32", "float64", "int64", "int32", "uint8", "bool", "float16"]),
                    hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
PLAIN = st.recursive(st.one_of(PLAIN_SCALARS, ARRAYS),
                     lambda kids: st.one_of(st.lists(kids, max_size=4), st.tuples(kids, kids),
                                            st.dictionaries(st.text(max_size=8), kids, max_size=4)), max_leaves=12)


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@FEW
@given(value=PLAIN, protocol=st.integers(2, 4))
def test_unpickler_reads_back_every_plain_value(value, protocol):
    """Guards: the allow-list is not so tight that it refuses what paddle.save (protocols 2-4) writes:
    arrays of every dtype and shape, nested dicts / lists / tuples, numbers, strings, bytes, None."""
    assert _same(value, safe_pickle.loads(pickle.dumps(value, protocol=protocol), "ok.pdparams"))


def _state_pickle():
    from collections import OrderedDict
    rng = np.random.default_rng(0)
    state = OrderedDict([("conv.weight", rng.random((4, 3, 3, 3), dtype=np.float32)),
                         ("bn._mean", np.zeros(4, np.float32)), ("fc.bias", np.arange(3, dtype=np.int64)),
                         ("StructuredToParameterName@@", {"conv.weight": "conv2d_0.w_0"})])
    return pickle.dumps(state, protocol=4)


@SOME
@example(data=b"")
@example(data=b"\x80\x05\x95")
@given(data=st.one_of(st.binary(max_size=200),
                      st.tuples(st.integers(0, 2000), st.integers(0, 255), st.integers(0, 2000)).map(
                          lambda t: (lambda s: s[:t[0] % len(s)] + bytes([t[1]]) + s[t[0] % len(s) + 1:])(
                              _state_pickle())[:max(1, len(_state_pickle()) - t[2])])))
def test_unpickler_fails_only_with_a_one_line_config_error(data):
    """Guards: garbage, truncated and bit-flipped state files give a ConfigError naming the file, never a
    traceback of another type (or a hang)."""
    try:
        safe_pickle.loads(data, "noisy.pdparams")
    except ConfigError as e:
        assert str(e).startswith("noisy.pdparams: ") and "\n" not in str(e)


# -- -o overrides and YAML values ---------------------------------------------------------------------------
PRINTABLE = st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=20)
YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 12, 10 ** 12),
                         st.floats(allow_nan=False, allow_infinity=True), PRINTABLE)
YAML_VALUES = st.one_of(YAML_SCALARS, st.lists(YAML_SCALARS, max_size=4),
                        st.lists(st.lists(YAML_SCALARS, max_size=3), max_size=3),
                        st.dictionaries(st.from_regex(r"\A[a-z_]{1,8}\Z"), YAML_SCALARS, max_size=3))


def _as_typed(value):
    """A value as one types it after ``-o key=``: a one-line YAML flow value."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), allow_unicode=True)
    # only the document-end marker and the newline go: str.strip would also eat a value of U+00A0 or U+3000
    return (text[:-len("\n...\n")] if text.endswith("\n...\n") else text).rstrip("\n")


def _cfg():
    return {"Global": {"epochs": 3, "output_dir": "./output"}, "Arch": {"name": "ResNet18"},
            "DataLoader": {"Train": {"dataset": {"transform_ops": [{"DecodeImage": {"to_rgb": True}},
                                                                   {"ResizeImage": None}]}}}}


@SOME
@given(value=YAML_VALUES)
def test_override_round_trips_any_value(value):
    """Guards: ``-o Key=<value>`` sets exactly the value typed (quotes, lists, maps, ``=`` and ``:`` inside,
    numbers, null, booleans), leaves the rest of the config alone, and is never evaluated as Python."""
    from ppcls.utils.config import apply_override
    cfg = apply_override(_cfg(), f"Global.pretrained_model={_as_typed(value)}")
    got = cfg["Global"].pop("pretrained_model")
    assert got == value and type(got) is type(value)
    assert cfg == _cfg()


@SOME
@example(text="http://host:8080/w.pdparams?tag=a=b")
@example(text="a:1")
@given(text=st.from_regex(r"\A[A-Za-z][A-Za-z0-9_./\-]{0,10}[=:][A-Za-z0-9_./=:\-]{0,20}[A-Za-z0-9_./=\-]\Z"))
def test_override_keeps_equals_and_colons_of_an_unquoted_value(text):
    """Guards: only the first ``=`` separates key from value; a URL, ``a=b`` or ``a:b`` typed unquoted stays
    that string (a mutant splitting at every ``=`` or on ``:`` fails here). A value ending in ``:`` or with
    ``: `` inside is a YAML map, as in a config file: quote it to keep it a string."""
    from ppcls.utils.config import apply_override
    assert apply_override(_cfg(), f"Global.pretrained_model={text}")["Global"]["pretrained_model"] == text


@FEW
@example(path=["A"], value="\xa0")
@given(path=st.lists(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}\Z"), min_size=1, max_size=4),
       value=YAML_SCALARS)
def test_override_creates_the_dotted_path(path, value):
    """Guards: a dotted key lands its value at that path (creating sections), nothing else moves."""
    from ppcls.utils.config import apply_override
    assume(path[0] not in _cfg())
    cfg = apply_override(_cfg(), f"{'.'.join(path)}={_as_typed(value)}")
    node = cfg
    for part in path:
        node = node[part]
    assert node == value
    del cfg[path[0]]
    assert cfg == _cfg()


@FEW
@given(index=st.integers(-4, 4), value=st.integers(1, 500))
def test_override_into_an_op_list_by_index(index, value):
    """Guards: ``transform_ops.<i>.size`` reaches the i-th op's options; an index out of range is a one-line
    error naming the key."""
    from ppcls.utils.config import apply_override
    key = f"DataLoader.Train.dataset.transform_ops.{index}.size"
    ops = _cfg()["DataLoader"]["Train"]["dataset"]["transform_ops"]
    if -len(ops) <= index < len(ops):
        cfg = apply_override(_cfg(), f"{key}={value}")
        op = cfg["DataLoader"]["Train"]["dataset"]["transform_ops"][index]
        assert next(iter(op.values()))["size"] == value
    else:
        with pytest.raises(ConfigError, match=r"transform_ops\.-?\d+: index -?\d+ out of range"):
            apply_override(_cfg(), f"{key}={value}")


@FEW
@given(item=st.text(st.characters(blacklist_characters="=", blacklist_categories=("Cs",)), max_size=20))
def test_override_without_equals_is_a_config_error(item):
    """Guards: ``-o`` text without ``=`` is refused naming it, not silently ignored."""
    from ppcls.utils.config import apply_override
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override(_cfg(), item)


@FEW
@given(value=YAML_VALUES)
def test_yaml_file_values_round_trip(tmp_path, value):
    """Guards: a value written to a config file (and one under a ``_BASE_``) is read back unchanged."""
    from ppcls.utils.config import load_yaml_with_bases
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"Global": {"a": value, "b": 1}}, allow_unicode=True), encoding="utf-8")
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"_BASE_": str(base), "Global": {"b": value}}, allow_unicode=True),
                     encoding="utf-8")
    cfg = load_yaml_with_bases(str(child))
    assert cfg["Global"]["a"] == value and cfg["Global"]["b"] == value


# -- label lists and file lists -----------------------------------------------------------------------------
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20).map(str.strip)


@FEW
@given(labels=st.dictionaries(st.integers(0, 10 ** 6), NAME, min_size=1, max_size=12))
def test_label_list_round_trips(tmp_path, labels):
    """Guards: ``class_id name`` lines: names keep their inner spaces, any id order, blank lines skipped."""
    from ppcls.inference.labels import label_names, read_label_list
    path = tmp_path / "labels.txt"
    path.write_text("\n\n".join(f"{k} {v}" for k, v in labels.items()) + "\n", encoding="utf-8")
    assert read_label_list(str(path)) == labels
    small = {k % 7: v for k, v in labels.items()}
    path.write_text("".join(f"{k} {v}\n" for k, v in small.items()), encoding="utf-8")
    assert label_names(str(path)) == [small.get(i, "") for i in range(max(small) + 1)]


@FEW
@given(good=st.lists(st.tuples(st.integers(0, 99), NAME), min_size=0, max_size=5),
       bad=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Nd"),
                                 blacklist_characters="+-"), min_size=1, max_size=10).map(str.strip))
def test_label_list_bad_line_names_its_line(tmp_path, good, bad):
    """Guards: a line whose id is not an integer is an error naming file and line, not a skipped class."""
    from ppcls.inference.labels import read_label_list
    assume(bad)
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"{k} {v}\n" for k, v in good) + f"{bad} name\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:{len(good) + 1}: expected 'class_id name'"):
        read_label_list(str(path))


FILE_PATH = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=24).map(
    str.strip).filter(lambda s: s and not s.startswith("#"))


@FEW
@given(rows=st.lists(st.tuples(FILE_PATH, st.integers(0, 9)), min_size=1, max_size=8),
       sep=st.sampled_from([" ", "\t", "  "]), comments=st.booleans())
def test_file_list_round_trips(tmp_path, rows, sep, comments):
    """Guards: ``path label`` lines, the label being the last field, so paths with spaces, ``=``, ``:`` or
    any script survive; comment and blank lines are skipped."""
    from ppcls.data.dataset.imagenet import parse_file_list
    path = tmp_path / "list.txt"
    lines = [f"{p}{sep}{l}" for p, l in rows]
    if comments:
        lines = ["# a comment", ""] + lines + ["   "]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert parse_file_list(str(path), "root", class_num=10) == [(os.path.join("root", p), l) for p, l in rows]


@FEW
@given(rows=st.lists(st.tuples(FILE_PATH, st.integers(0, 9)), min_size=0, max_size=5),
       label=st.one_of(st.integers(10, 10 ** 9), st.integers(-10 ** 9, -1)))
def test_file_list_label_out_of_range_names_its_line(tmp_path, rows, label):
    """Guards: a label outside 0..class_num-1 is caught at load, naming the line (not an index error later)."""
    from ppcls.data.dataset.imagenet import parse_file_list
    path = tmp_path / "list.txt"
    path.write_text("".join(f"{p} {l}\n" for p, l in rows) + f"img.jpg {label}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf":{len(rows) + 1}: label {label} outside 0..9"):
        parse_file_list(str(path), "root", class_num=10)


@FEW
@given(rows=st.lists(st.tuples(st.from_regex(r"\A[A-Za-z0-9_./=:-]{1,12}\Z"),
                               st.from_regex(r"\A[A-Za-z0-9_./=:-]{1,12}\Z")), min_size=1, max_size=5),
       extra=st.booleans())
def test_segmentation_list_pairs_or_names_its_line(tmp_path, rows, extra):
    """Guards: an ``image mask`` annotation list: pairs round trip; a line with a third field is an error
    naming its line (not a silently dropped mask)."""
    from ppcls.data.dataset.seg_dataset import SegDataset
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    path = tmp_path / "seg.txt"
    lines = [f"{a} {b}" for a, b in rows] + (["a.png b.png c.png"] if extra else [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if extra:
        with pytest.raises(ConfigError, match=rf"seg.txt:{len(rows) + 1}: expected 'image_path mask_path'"):
            SegDataset(str(root), str(path))
    else:
        assert SegDataset(str(root), str(path)).samples == [(os.path.join(str(root), a), os.path.join(str(root), b))
                                                           for a, b in rows]


# -- the service's request decoding ---------------------------------------------------------------------------
def _encoded(ext, h=6, w=5):
    img = (np.arange(h * w * 3) % 251).astype(np.uint8).reshape(h, w, 3)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


JPEG, PNG = _encoded(".jpg"), _encoded(".png")


def _preprocess(img):
    return cv2.resize(img, (4, 4)).transpose(2, 0, 1).astype(np.float32)


@SOME
@given(data=st.binary(min_size=1, max_size=300), wrap=st.integers(0, 80), data_url=st.booleans())
def test_base64_round_trips_wrapped_or_as_data_url(data, wrap, data_url):
    """Guards: any bytes sent as base64 arrive unchanged, MIME line-wrapped at any width or as a data URL."""
    from ppcls.serving.inputs import b64decode
    text = base64.b64encode(data).decode()
    if wrap:
        text = "\n".join(text[i:i + wrap] for i in range(0, len(text), wrap))
    if data_url:
        text = "data:image/png;base64," + text
    assert b64decode(text, "images[0]") == data


@SOME
@given(text=st.text(max_size=40))
def test_base64_decoding_fails_only_with_a_request_error(text):
    """Guards: any string in ``images`` either decodes or is a 400 naming the image, never a server error."""
    from ppcls.serving.inputs import RequestError, b64decode
    try:
        out = b64decode(text, "images[2]")
    except RequestError as e:
        assert e.status == 400 and e.kind in ("bad_base64", "empty") and e.message.startswith("images[2]: ")
    else:
        assert out and base64.b64encode(out).decode().rstrip("=") == "".join(
            text.partition(",")[2].split() if text.startswith("data:") else text.split()).rstrip("=")


@SOME
@example(body=b"[]")
@example(body=b'{"images": "x"}')
@example(body=b"[" * 100000)
@given(body=st.one_of(st.binary(max_size=200),
                      st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                                   lambda k: st.one_of(st.lists(k, max_size=3),
                                                       st.dictionaries(st.sampled_from(["images", "top_k", "x"]),
                                                                       k, max_size=3)),
                                   max_leaves=8).map(lambda d: json.dumps(d).encode())))
def test_request_body_fails_only_with_a_request_error(body):
    """Guards: any request body gives a list of image bytes or a 4xx with a one-line message."""
    from ppcls.serving.inputs import RequestError, parse_json_images
    try:
        out = parse_json_images(body, max_images=4)
    except RequestError as e:
        assert e.status in (400, 413, 422) and "\n" not in e.message
    else:
        assert 1 <= len(out) <= 4 and all(isinstance(b, bytes) and b for b in out)


@SOME
@example(data=b"\xff\xd8\xff")
@example(data=b"\x89PNG\r\n\x1a\n")
@given(data=st.binary(min_size=1, max_size=200))
def test_bytes_that_are_not_an_image_are_a_400(data):
    """Guards: arbitrary bytes (including ones starting like a JPEG or PNG) are a 400 naming the image."""
    from ppcls.serving.inputs import RequestError, decode_image
    with pytest.raises(RequestError) as e:
        decode_image(data, _preprocess, [3, 4, 4], 10 ** 6, "images[0]")
    assert e.value.status == 400 and e.value.message.startswith("images[0]: ")


@given(fmt=st.sampled_from(["jpeg", "png"]), cut=st.integers(1, 10 ** 6))
@SOME
def test_truncated_images_are_refused(fmt, cut):
    """Guards: an upload cut short is refused (OpenCV would decode a truncated JPEG half grey)."""
    from ppcls.serving.inputs import RequestError, decode_image
    full = JPEG if fmt == "jpeg" else PNG
    data = full[:cut % len(full)] or full[:1]
    with pytest.raises(RequestError) as e:
        decode_image(data, _preprocess, [3, 4, 4], 10 ** 6, "images[1]")
    assert e.value.status == 400 and e.value.kind in ("truncated", "corrupt", "format", "empty")


def test_whole_images_decode_to_the_model_input():
    from ppcls.serving.inputs import decode_image
    for data in (JPEG, PNG):
        x = decode_image(data, _preprocess, [3, 4, 4], 10 ** 6, "images[0]")
        assert x.shape == (3, 4, 4) and x.dtype == np.float32


@SOME
@given(fmt=st.sampled_from(["jpeg", "png"]), w=st.integers(1, 65535), h=st.integers(1, 65535))
def test_huge_images_are_refused_from_their_header(fmt, w, h):
    """Guards: an image whose header claims more pixels than the limit is a 413 before anything is decoded
    (a decompression bomb); one within the limit is not refused for its size."""
    from ppcls.serving.inputs import RequestError, decode_image
    data = bytearray(JPEG if fmt == "jpeg" else PNG)
    if fmt == "png":
        data[16:24] = struct.pack(">II", w, h)
    else:
        sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
        data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    limit = 10 ** 6
    try:
        decode_image(bytes(data), _preprocess, [3, 4, 4], limit, "images[0]")
    except RequestError as e:
        assert (e.status == 413) == (w * h > limit), e.message
        if e.status == 413:
            assert f"{w}x{h}" in e.message and str(limit) in e.message
    else:
        assert w * h <= limit
