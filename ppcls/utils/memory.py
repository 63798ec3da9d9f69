"""Peak memory of this process from the host's own counters (no device sync): the training log's
``Global.print_mem_info`` and the deploy benchmark report read it."""
import sys


def peak_rss_bytes():
    """The peak resident set size of this process in bytes, or None where the platform gives none."""
    try:
        import resource
    except ImportError:  # Windows
        try:
            import psutil
            return int(psutil.Process().memory_info().peak_wset)
        except (ImportError, AttributeError):
            return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere
