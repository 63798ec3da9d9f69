import os
import shutil
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



@pytest.fixture
def ppcls_warnings(monkeypatch):
    """The messages the ppcls logger warns during the test, as a live list: the logger does not propagate
    to pytest's handlers, so a handler of the test's own listens; the once-per-process compatibility
    warnings are re-armed for the test and their memory restored after it."""
    import logging
    from ppcls.utils import config as config_module
    from ppcls.utils.logger import logger
    monkeypatch.setattr(config_module, "_warned", set())
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)

# -- temporary folders ---------------------------------------------------------------------------------------
# pytest.ini keeps a test's tmp_path only when the test failed. A module fixture's folder would stay until the
# session ends, and the trained checkpoints in them add up (a ResNet18 epoch is ~90 MB of .pdparams + .pdopt),
# so module fixtures take their folders from module_tmp, which removes them once the module's tests are done.
FAILED_MODULES = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and getattr(item, "module", None) is not None:
        FAILED_MODULES.add(item.module.__name__)
    return report


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """``module_tmp(name)``: tmp_path_factory.mktemp(name), removed after the module's last test under
    pytest.ini's tmp_path_retention_policy (failed: kept when a test of the module failed)."""
    made = []

    def mktemp(name):
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    policy = request.config.getini("tmp_path_retention_policy")
    if policy == "none" or (policy == "failed" and request.module.__name__ not in FAILED_MODULES):
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


# -- running the suite on two workers (tests/run_tests.sh) --------------------------------------------------
# run_tests.sh runs the suite twice: `--phase parallel` on pytest-xdist workers (--dist loadgroup), then
# `--phase timing` alone, so that the tests asserting speed ratios never share the cores. Under loadgroup
# every test stays with the other tests of its module (module fixtures are built once), except the
# parametrized per-model checks below, which spread over the workers; every test that runs
# paddle.distributed.launch is in one group, because launches use fixed default ports.
SPREAD = {"test_dygraph_predictor_onnx_equivalence", "test_matches_original", "test_matches_gluon_reference",
          "test_config_trains_one_step", "test_int8_top1_within_half_a_point_on_the_digits",
          "test_model_cards_equal_the_built_models", "test_counts_equal_the_original"}


def pytest_configure(config):
    """An xdist worker keeps to its share of the cores (worker i of n: cores i, i + n, ...), and so do the
    tools it starts, which size their thread pools by the affinity (ppcls.utils.device.available_cores).
    Two workers of two threads each on two cores ran a training step at 42 images/s in all; one core each,
    72 (RLA_ResNet50, 32x32, two copies side by side): oversubscribed thread pools wait for each other."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    share = cores[int(worker.lstrip("gw")) % count::count]
    if len(cores) >= count and share:
        os.sched_setaffinity(0, share)


def pytest_addoption(parser):
    parser.addoption("--phase", choices=["all", "parallel", "timing"], default="all",
                     help="parallel: all but the tests marked timing; timing: only those (tests/run_tests.sh)")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    phase = config.getoption("--phase")
    if phase != "all":
        keep = [i for i in items if (i.get_closest_marker("timing") is not None) == (phase == "timing")]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
    for item in items:
        if item.get_closest_marker("launch") is not None:
            item.add_marker(pytest.mark.xdist_group("launch"))
        elif item.originalname not in SPREAD:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
