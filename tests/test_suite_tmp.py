"""The suite's own temporary-folder rules (pytest.ini, tests/conftest.py module_tmp): a passing test's tmp_path
and a finished module's module_tmp folders are removed as the run goes; a failure's folders stay for a look."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

MODULE = '''
import os
import pytest

@pytest.fixture(scope="module")
def trained(module_tmp):
    folder = module_tmp("{name}_module")
    (folder / "weights.bin").write_bytes(b"0" * 1000)
    return folder

def test_one(trained, tmp_path):
    (tmp_path / "out.bin").write_bytes(b"1" * 1000)
    assert (trained / "weights.bin").exists()

def test_two(trained, tmp_path):
    (tmp_path / "out.bin").write_bytes(b"2" * 1000)
    assert {fail}
'''


def test_passing_folders_go_and_failing_ones_stay(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(os.path.join(os.path.dirname(HERE), "pytest.ini"), proj / "pytest.ini")
    (proj / "tests").mkdir()
    shutil.copy(os.path.join(HERE, "conftest.py"), proj / "tests" / "conftest.py")
    (proj / "tests" / "test_good.py").write_text(MODULE.format(name="good", fail="True"))
    (proj / "tests" / "test_bad.py").write_text(MODULE.format(name="bad", fail="False"))
    base = tmp_path / "base"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        f"--basetemp={base}", "tests"], cwd=proj, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "1 failed, 3 passed" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    left = sorted(n for n in os.listdir(base) if not os.path.islink(base / n))
    # the failed test's tmp_path and its module's fixture folder; nothing of the passing module
    assert left == ["bad_module0", "test_two0"], left
    assert (base / "bad_module0" / "weights.bin").exists() and (base / "test_two0" / "out.bin").exists()
