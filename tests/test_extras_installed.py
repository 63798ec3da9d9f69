"""The optional toolkits' tests skip where a toolkit is not installed (a user's quick loop); .ci/run installs
them all and sets PPCLS_REQUIRE_EXTRAS=1, and then a missing one fails here instead of being skipped quietly."""
import importlib.util
import os

import pytest

REQUIRED = os.environ.get("PPCLS_REQUIRE_EXTRAS") == "1"


@pytest.mark.skipif(not REQUIRED, reason="PPCLS_REQUIRE_EXTRAS=1 is not set (.ci/run sets it)")
@pytest.mark.parametrize("module, install", [("ppdet", "bash tools/install_extras.sh det"),
                                             ("paddleseg", "bash tools/install_extras.sh seg"),
                                             ("paddlex", "bash tools/install_extras.sh paddlex")])
def test_the_optional_toolkit_is_installed(module, install):
    assert importlib.util.find_spec(module) is not None, f"{module} is missing: {install}"


@pytest.mark.skipif(not REQUIRED, reason="PPCLS_REQUIRE_EXTRAS=1 is not set (.ci/run sets it)")
def test_paddleclas26_venv_is_installed():
    venv = os.environ.get("PPCLS_PADDLECLAS26_VENV") or os.path.expanduser(os.path.join("~", ".cache", "ppcls", "paddleclas26"))
    assert os.path.isfile(os.path.join(venv, "bin", "python")), f"no PaddleClas 2.6 venv in {venv}: bash tools/install_paddleclas26.sh"
