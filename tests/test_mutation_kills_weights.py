"""ppcls.arch.weights behaviour that tests/test_weights.py left open, found by mutation testing (bash
tests/mutation.sh arch/weights.py): where the cache puts tagged and URL weights, what a download is asked to
verify, the manual-download message, and the class count read off a classifier-only mismatch. Downloads are
replaced by a recorder: nothing goes to the network."""
import hashlib
import os

import pytest

from ppcls.arch import weights
from ppcls.arch.weight_table import Weights
from ppcls.utils.errors import ConfigError


@pytest.fixture
def fetched(download_env):
    """The arguments of each download.fetch call (which then returns the destination)."""
    calls = []

    def fetch(url, dest, sha256=None, sha256_prefix=None, what=None):
        calls.append(dict(url=url, dest=dest, sha256=sha256, sha256_prefix=sha256_prefix, what=what))
        return dest
    download_env.setattr(weights.download, "fetch", fetch)
    return calls


def cache():
    return os.path.join(os.environ["PPCLS_HOME"], "weights")


def test_tagged_weights_are_fetched_into_the_cache_with_their_hashes(fetched):
    w = Weights(tag="t1", layout="paddle", file="m.pdparams", url="https://h/m.pdparams", sha256="ab" * 32,
                sha256_prefix="abab")
    assert weights.cached_path("DLA34", w) == os.path.join(cache(), "DLA34", "t1", "m.pdparams")
    assert weights.fetch_weights("DLA34", w) == os.path.join(cache(), "DLA34", "t1", "m.pdparams")
    assert fetched == [dict(url="https://h/m.pdparams", dest=os.path.join(cache(), "DLA34", "t1", "m.pdparams"),
                            sha256="ab" * 32, sha256_prefix="abab", what="DLA34.t1 weights")]


@pytest.mark.parametrize("url,base", [("https://h/a/m.pth?x=1?y=2", "m.pth"), ("https://h/dir/", "weights")])
def test_urls_are_cached_under_a_hash_of_the_url(fetched, url, base):
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    assert weights.fetch_url(url) == os.path.join(cache(), "urls", key, base)
    assert fetched[0]["what"] == "weights" and fetched[0]["url"] == url


@pytest.mark.parametrize("pages,shown", [(("https://a", "https://b"), "https://a or https://b"),
                                         ((), "its publisher's page")])
def test_manual_weights_missing_from_the_cache_say_where_to_get_them(fetched, pages, shown):
    w = Weights(tag="orig", layout="torch", file="m.pth", pages=pages)
    path = os.path.join(cache(), "RLA_ResNet50", "orig", "m.pth")
    with pytest.raises(ConfigError) as e:
        weights.fetch_weights("RLA_ResNet50", w)
    assert str(e.value) == (f"RLA_ResNet50.orig: m.pth is published only at {shown}, which a plain HTTP GET cannot "
                            f"fetch; download it by hand and put it at {path} (or pass its path as the pretrained "
                            "weights)")
    assert fetched == []


@pytest.mark.parametrize("problems,width", [
    ({"mismatched": [("fc.weight", (10, 64), "fc.weight", (1000, 64)), ("fc.bias", (10,), "fc.bias", (1000,))]}, 10),
    ({"mismatched": [("fc.weight", (10, 64), "fc.weight", (1000, 64))]}, 10),
    ({"mismatched": [("fc.weight", (10, 64), "fc.weight", (1000, 64)), ("x", (12,), "x", (1000,))]}, None),
    ({"mismatched": [("fc.weight", (10, 64), "fc.weight", (1000, 64))], "missing": ["a"]}, None),
    ({"mismatched": [("fc.weight", (10, 64), "fc.weight", (1000, 64))], "unexpected": ["a"]}, None),
    ({"mismatched": [("a", (10,), "a", (1,))] * 3}, None),
    ({}, None),
])
def test_classifier_width_is_read_only_off_a_classifier_only_mismatch(problems, width):
    assert weights._classifier_width(problems, {}) == width


class FakeRegistry:
    def __init__(self):
        self.built = []

    def build(self, name, options=None, where=None):
        self.built.append((name, options))
        return f"model({name}, {options})"


@pytest.fixture
def conversion(monkeypatch):
    """convert_foreign with the rules, the model registry and the converter replaced by recorders: a model of
    1000 classes does not fit the 10-class checkpoint, one built with class_num=10 does."""
    from ppcls.arch.convert import ConversionError

    registry, calls = FakeRegistry(), []
    widths = {"fc.weight": (10, 4), "fc.bias": (10,)}

    def convert(model, src, rules):
        calls.append((model, src, rules))
        if "{'class_num': 10}" not in model:
            raise ConversionError("mis-shaped", problems={"mismatched": [
                (k, list(s), k, [1000] + list(s[1:])) for k, s in widths.items() if k in src]})
        return {"converted": True}, []
    monkeypatch.setattr(weights, "layouts_of", lambda name: {"original": {}})
    monkeypatch.setattr(weights, "get_rules", lambda name, keys=None: "rules")
    monkeypatch.setattr(weights, "detect_layout", lambda name, keys: "original")
    monkeypatch.setattr(weights, "MODELS", registry)
    monkeypatch.setattr(weights, "convert_state_dict", convert)
    return registry, calls, ConversionError


def test_a_checkpoint_of_another_class_count_is_converted_with_its_own(conversion):
    registry, calls, _ = conversion
    src = {"fc.weight": 1, "fc.bias": 2}
    assert weights.convert_foreign("DLA34", src, "ck.pth") == {"converted": True}
    assert registry.built == [("DLA34", None), ("DLA34", {"class_num": 10})]
    assert calls[-1] == ("model(DLA34, {'class_num': 10})", src, "rules")


def test_other_misfits_are_reported_with_the_source_named(conversion):
    registry, _, ConversionError = conversion
    with pytest.raises(ConversionError, match=r"^ck\.pth: mis-shaped$"):
        weights.convert_foreign("DLA34", {"y": 1}, "ck.pth")  # no classifier among the misfits: no retry
    assert registry.built == [("DLA34", None)]
