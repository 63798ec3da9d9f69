import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import pytest  # noqa: E402


@pytest.fixture
def download_env(tmp_path, monkeypatch):
    """A weights cache of the test's own, no proxies and no PPCLS_* settings from outside, fast back-off."""
    for name in list(os.environ):
        if name.startswith("PPCLS_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("PPCLS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PPCLS_DOWNLOAD_BACKOFF", "0.01")
    return monkeypatch
