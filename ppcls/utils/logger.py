"""The ppcls logger: PaddleClas's line prefix ``[%Y/%m/%d %H:%M:%S] ppcls INFO: ``, stdout plus an
optional file. Every rank logs to its own stdout (log/workerlog.N under paddle.distributed.launch);
only rank 0 writes the log file."""
import logging
import os
import sys

logger = logging.getLogger("ppcls")
logger.propagate = False
_FMT = logging.Formatter("[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt="%Y/%m/%d %H:%M:%S")
if not logger.handlers:
    _h = logging.StreamHandler(sys.stdout)
    _h.setFormatter(_FMT)
    logger.addHandler(_h)
    logger.setLevel(logging.INFO)


def init_logger(log_file=None):
    rank = int(os.environ.get("PADDLE_TRAINER_ID", 0))
    logger.setLevel(logging.INFO)
    for h in list(logger.handlers):
        if isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
            h.close()
    if log_file and rank == 0:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        fh = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        fh.setFormatter(_FMT)
        logger.addHandler(fh)
    return logger
