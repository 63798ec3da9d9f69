"""Dying (``os._exit``, as under kill -9: no cleanup runs) at a named point of a checkpoint save, for the
crash tests. A point is ``<stage>:<operation>:<file name>`` plus its occurrence count:

    before:replace:latest.pdopt    a file is about to be renamed into place (its temp file is complete)
    after:replace:latest.pdopt     ... was just renamed into place
    during:write:latest.pdopt      half of the temp file of latest.pdopt is written
    during:link:epoch_1.pdopt      the temp hard link (or copy) for epoch_1.pdopt exists, not yet renamed
    before:unlink:latest.bak.pdstates / after:unlink:...

Only operations on files in ``directory`` count. ``install(spec, directory)`` with ``spec`` =
``"<point>@<n>"`` dies at the n-th occurrence; with ``record`` a path, every point reached is appended to
that file as ``<point>@<n>`` (and ``step <i>`` lines written by the caller), to enumerate them.
"""
import os

KILL_EXIT = 137


def _final_name(tmp_base):
    """The file a temp file stands for: ``.tmp_latest.pdopt.k2j3`` / ``.tmp_latest.pdopt.123.link``."""
    name = tmp_base[len(".tmp_"):]
    return name.rsplit(".", 2)[0] if name.endswith(".link") else name.rsplit(".", 1)[0]


def install(spec, directory, record=None):
    import paddle

    directory = os.path.abspath(directory)
    target, _, nth = (spec or "").rpartition("@")
    nth = int(nth) if target else 0
    counts = {}
    real = {"replace": os.replace, "link": os.link, "unlink": os.unlink, "save": paddle.save}

    def point(stage, op, path, action=None):
        if os.path.dirname(os.path.abspath(path)) != directory:
            return False
        name = os.path.basename(path)
        if name.startswith(".tmp_"):
            name = _final_name(name)
        key = f"{stage}:{op}:{name}"
        counts[key] = counts.get(key, 0) + 1
        if record:
            with open(record, "a") as f:
                f.write(f"{key}@{counts[key]}\n")
        if key == target and counts[key] == nth:
            if action is not None:
                action()
            os._exit(KILL_EXIT)

    def replace(src, dst, *a, **k):
        point("before", "replace", dst)
        real["replace"](src, dst, *a, **k)
        point("after", "replace", dst)

    def unlink(path, *a, **k):
        point("before", "unlink", path)
        real["unlink"](path, *a, **k)
        point("after", "unlink", path)

    def link(src, dst, *a, **k):
        real["link"](src, dst, *a, **k)
        point("during", "link", dst)

    def save(obj, path, *a, **k):
        def half_written():
            real["save"](obj, path, *a, **k)
            with open(path, "rb+") as f:
                f.truncate(os.path.getsize(path) // 2)
        if isinstance(path, str) and os.path.basename(path).startswith(".tmp_"):
            point("during", "write", path, half_written)
        return real["save"](obj, path, *a, **k)

    os.replace, os.unlink, os.link, paddle.save = replace, unlink, link, save


def installed_from_env():
    """For a tool started by a test: ``PPCLS_TEST_KILL_AT=<point>@<n>``, ``PPCLS_TEST_KILL_DIR``."""
    if os.environ.get("PPCLS_TEST_KILL_AT") or os.environ.get("PPCLS_TEST_KILL_RECORD"):
        install(os.environ.get("PPCLS_TEST_KILL_AT"), os.environ["PPCLS_TEST_KILL_DIR"],
                os.environ.get("PPCLS_TEST_KILL_RECORD"))
