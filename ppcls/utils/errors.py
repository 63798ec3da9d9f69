"""User-facing errors. The tools print their message on one line and exit with code 2."""
import difflib


class ConfigError(Exception):
    """A problem with the user's configuration, files or command line: shown as one line, exit 2."""


def nearest(name, candidates):
    """The closest valid name to ``name`` (or None), for 'did you mean' hints."""
    found = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return found[0] if found else None


def unknown_name_error(kind, name, candidates, where=None):
    hint = nearest(name, candidates)
    msg = f"unknown {kind} '{name}'"
    if where:
        msg = f"{where}: {msg}"
    if hint:
        msg += f" (did you mean '{hint}'?)"
    return ConfigError(msg)
