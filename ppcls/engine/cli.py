"""Command-line entry points shared by tools/*.py: ``-c CONFIG`` and repeated ``-o key=value``.
User errors print one line (``error: ...``) and exit with code 2, without a traceback."""
import argparse
import os
import sys

from ..utils.errors import ConfigError


def parse_args(description, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="YAML config file")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="override a config value: -o Global.epochs=10 (repeatable)")
    parser.add_argument("-p", "--profiler_options", default=None, help="accepted for PaddleClas compatibility")
    return parser.parse_args(argv)


def run_guarded(fn):
    """Run ``fn()``; turn user errors into a one-line message and exit code 2."""
    try:
        return fn()
    except ConfigError as e:
        rank = os.environ.get("PADDLE_TRAINER_ID")
        prefix = f"error (rank {rank}): " if rank not in (None, "0") else "error: "
        print(prefix + str(e).replace("\n", " "), file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        # under paddle.distributed.launch, say which rank failed and why before the traceback, so
        # the failing worker is obvious in log/workerlog.N and the launcher's error detail
        rank = os.environ.get("PADDLE_TRAINER_ID")
        if rank is not None and int(os.environ.get("PADDLE_TRAINERS_NUM", 1)) > 1:
            print(f"rank {rank} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise


def main(mode, argv=None):
    args = parse_args(f"ppcls {mode}", argv)

    def go():
        from ..utils.config import get_config
        from .engine import Engine
        cfg = get_config(args.config, args.override)
        engine = Engine(cfg, mode=mode)
        if mode == "train":
            engine.train()
        elif mode == "eval":
            engine.eval()
        return engine
    return run_guarded(go)
