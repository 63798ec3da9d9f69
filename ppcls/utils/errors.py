"""User-facing errors, exit codes and the guard every command runs under.

Exit codes (listed in the README):
    0    success
    1    a bug: an unexpected exception, shown with its traceback
    2    the user's mistake: a config key, a path, a file that cannot be used (``ConfigError``)
    3    a run that failed on its own: a full disk, a non-finite loss, a worker that died (``RunError``)
    130  interrupted (Ctrl-C)
Both error kinds print one line (``error: ...``) and no traceback.
"""
import difflib
import os
import sys

EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 3
EXIT_INTERRUPTED = 130


class ConfigError(Exception):
    """A problem with the user's configuration, files or command line: one line, exit 2."""
    exit_code = EXIT_USER_ERROR


class RunError(Exception):
    """A run that could not go on (disk full, non-finite loss, a dead worker): one line, exit 3.
    The last complete checkpoint stays usable."""
    exit_code = EXIT_RUN_FAILED


def nearest(name, candidates):
    """The closest valid name to ``name`` (or None), for 'did you mean' hints."""
    found = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return found[0] if found else None


def did_you_mean(name, candidates, listing=False):
    """' (did you mean 'x'?)', or with ``listing`` the valid names when none is close; else ''."""
    hint = nearest(name, candidates)
    if hint:
        return f" (did you mean '{hint}'?)"
    return f"; valid: {', '.join(sorted(str(c) for c in candidates))}" if listing and candidates else ""


def unknown_name_error(kind, name, candidates, where=None):
    msg = f"unknown {kind} '{name}'" + did_you_mean(name, candidates)
    return ConfigError(f"{where}: {msg}" if where else msg)


def _rank_prefix():
    rank = os.environ.get("PADDLE_TRAINER_ID")
    return f"error (rank {rank}): " if rank not in (None, "0") else "error: "


def run_guarded(fn, *args, **kwargs):
    """Run ``fn``; a ConfigError or RunError becomes one line on stderr and its exit code."""
    try:
        return fn(*args, **kwargs)
    except (ConfigError, RunError) as e:
        print(_rank_prefix() + str(e).replace("\n", " "), file=sys.stderr, flush=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:
        # under paddle.distributed.launch, say which rank failed and why before the traceback, so
        # the failing worker is obvious in log/workerlog.N and the launcher's error detail
        rank = os.environ.get("PADDLE_TRAINER_ID")
        if rank is not None and int(os.environ.get("PADDLE_TRAINERS_NUM", 1)) > 1:
            print(f"rank {rank} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
