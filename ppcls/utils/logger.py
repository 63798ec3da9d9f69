"""The ppcls logger: PaddleClas's line prefix ``[%Y/%m/%d %H:%M:%S] ppcls INFO: ``, stdout plus an
optional file. Every rank logs to its own stdout (log/workerlog.N under paddle.distributed.launch);
only rank 0 writes the log file. With ``Global.log_ranks`` (PaddleClas's key: ``"0,1"``, ``0``,
``[0, 1]``) the ranks outside it print only errors to stdout, as in PaddleClas, and keep their whole log
in ``<log file>.rank<N>.log`` beside the log file instead, so nothing a worker logs is lost."""
import logging
import os
import sys

from .errors import ConfigError

logger = logging.getLogger("ppcls")
logger.propagate = False
_FMT = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%Y/%m/%d %H:%M:%S")
if not logger.handlers:
    _h = logging.StreamHandler(sys.stdout)
    _h.setFormatter(_FMT)
    logger.addHandler(_h)
    logger.setLevel(logging.INFO)


def parse_log_ranks(value, where="log_ranks"):
    """``"0,1,2"``, ``0`` or ``[0, 1]`` -> the set of worker ranks."""
    if isinstance(value, str):
        items = [x.strip() for x in value.split(",") if x.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    ranks = set()
    for x in items:
        try:
            r = int(x) if not isinstance(x, (bool, float)) else None
        except (TypeError, ValueError):
            r = None
        if r is None or r < 0:
            raise ConfigError(f"{where}: worker ranks 0, 1, ... separated by commas, got {value!r}")
        ranks.add(r)
    if not ranks:
        raise ConfigError(f"{where}: no rank given ({value!r})")
    return ranks


def init_logger(log_file=None, log_ranks=None):
    rank = int(os.environ.get("PADDLE_TRAINER_ID", 0))
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        if isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
            h.close()
    console = log_ranks is None or rank in parse_log_ranks(log_ranks, "Global.log_ranks")
    for h in logger.handlers:
        if type(h) is logging.StreamHandler:
            h.setLevel(logging.NOTSET if console else logging.ERROR)
    if log_file and (rank == 0 or not console):
        if rank:
            log_file = f"{os.path.splitext(log_file)[0]}.rank{rank}.log"
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        fh.setFormatter(_FMT)
        logger.addHandler(fh)
    return logger
