"""PaddleX 3.7.x: the version check and the two fixes its image-classification route needs.

``opencv_check``: PaddleX decides whether OpenCV is present by looking for the distribution named
``opencv-contrib-python`` (``paddlex.utils.deps.is_dep_available``), not for the ``cv2`` module: with
this project's ``opencv-python-headless`` (or ``opencv-python``) its image reader, resize and normalize
refuse to run (``DependencyError: ... opencv-contrib-python``), and the modules that import ``cv2`` only
behind that check never bind it. Installing ``opencv-contrib-python`` beside another OpenCV wheel makes
two distributions own one ``cv2`` folder (and PaddleX's ``[cv]`` extra pins 4.10 with numpy < 2.4), so
the fix answers the check from ``cv2`` itself instead: ``is_dep_available("opencv-contrib-python")`` is
true when ``cv2`` imports, and the PaddleX modules that skipped ``import cv2`` get the module bound. It
is installed only on PaddleX 3.7.x, only when that distribution is missing and ``cv2`` imports, and it
replaces nothing of ``paddle``, OpenCV or NumPy.

``class_ids_per_image``: ``ClasRunnerPredictor.process`` returns the batch's class ids as one [N, k] array
while its scores and label names are lists, and ``BasePredictor.apply`` splits lists only, so every
result of a batch gets the whole batch's ids (a [1, k] array at batch size 1; the image-classification
pipeline's default batch of 4 gives each image the ids of all four, and PaddleX's serving app zips them
with the names). The fix wraps that one method of that one PaddleX class to hand the ids over as a list
of rows, the shape ``apply`` splits. Both fixes are installed once, on PaddleX 3.7.x only.
"""
import functools
import importlib.util
import sys
from importlib import metadata

from ..utils.errors import ConfigError

REQUIRED_PADDLEX = "3.7"
INSTALL_HINT = "bash tools/install_extras.sh paddlex"
OPENCV_DIST = "opencv-contrib-python"
GUARD = f'is_dep_available("{OPENCV_DIST}")'

_fixes = {}  # name -> what it replaced


def installed_paddlex_version():
    """The installed PaddleX's version without importing it (None when it is missing)."""
    if importlib.util.find_spec("paddlex") is None:
        return None
    try:
        return metadata.version("paddlex")
    except metadata.PackageNotFoundError:
        return "unknown"


def check_paddlex_version(version):
    """One line (a ConfigError) unless ``version`` is a PaddleX 3.7.x release."""
    if version is None:
        raise ConfigError(f"ppcls.paddlex needs PaddleX {REQUIRED_PADDLEX}.x, which is not installed; install it "
                          f"with: {INSTALL_HINT}")
    if version.split(".")[:2] != REQUIRED_PADDLEX.split("."):
        raise ConfigError(f"ppcls.paddlex needs PaddleX {REQUIRED_PADDLEX}.x, found {version}; install the "
                          f"supported one with: {INSTALL_HINT}")
    return version


def require_paddlex():
    """Import PaddleX 3.7.x or raise one line with the install command."""
    version = check_paddlex_version(installed_paddlex_version())
    import paddlex  # noqa: F401
    return version


def opencv_fix_needed():
    """PaddleX would refuse this machine's OpenCV: ``cv2`` imports, but not from ``opencv-contrib-python``."""
    try:
        metadata.version(OPENCV_DIST)
        return False
    except metadata.PackageNotFoundError:
        return importlib.util.find_spec("cv2") is not None


def _fix_opencv_check():
    import cv2
    import paddlex.utils.deps as deps

    original = deps.is_dep_available

    def is_dep_available(dep, /, check_version=False):
        if dep == OPENCV_DIST and not check_version:
            return True  # any OpenCV wheel's cv2 serves PaddleX's reader, resize and normalize
        return original(dep, check_version=check_version)

    # require_deps looks the name up in its module at each call; modules imported from now on bind this one
    deps.is_dep_available = is_dep_available
    bound = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if not name.startswith("paddlex.") or "cv2" in vars(module) or not path.endswith(".py"):
            continue
        with open(path, encoding="utf-8") as f:
            if GUARD in f.read():
                module.cv2 = cv2  # what its guarded ``import cv2`` would have bound
                bound.append(name)
    _fixes["opencv_check"] = {"original": original, "bound": tuple(bound)}


def class_ids_per_image(process):
    """``ClasRunnerPredictor.process`` handing its class ids over as a list of per-image rows."""
    @functools.wraps(process)
    def wrapper(self, *args, **kwargs):
        pred = process(self, *args, **kwargs)
        ids = pred.get("class_ids")
        if hasattr(ids, "ndim") and ids.ndim == 2:
            pred["class_ids"] = list(ids)
        return pred
    wrapper.ppcls_original = process
    return wrapper


def _fix_class_ids():
    from paddlex.inference.models.image_classification.predictor import ClasRunnerPredictor

    original = ClasRunnerPredictor.process
    if getattr(original, "ppcls_original", None) is None:
        ClasRunnerPredictor.process = class_ids_per_image(original)
    _fixes["class_ids_per_image"] = {"original": getattr(original, "ppcls_original", original)}


def apply_fixes():
    """Install the fixes once (PaddleX 3.7.x only; the OpenCV one only when needed). Returns their names."""
    require_paddlex()
    if "class_ids_per_image" not in _fixes:
        if opencv_fix_needed():
            _fix_opencv_check()
        _fix_class_ids()
    return sorted(_fixes)
