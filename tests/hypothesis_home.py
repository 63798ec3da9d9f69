"""Imported by the tests that use hypothesis: its caches (and failure patches) go to a temporary folder of the
process, removed at exit, instead of ./.hypothesis. Hypothesis picks the folder on first use, which can come
before any fixture, hence an import."""
import atexit
import shutil
import tempfile

from hypothesis import configuration

HOME = tempfile.mkdtemp(prefix="ppcls-hypothesis-")
configuration.set_hypothesis_home_dir(HOME)
atexit.register(shutil.rmtree, HOME, True)
