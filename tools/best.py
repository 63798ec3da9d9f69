"""Best validation top-1 / top-5 and their epochs from a training log.

    python tools/best.py --log-dir output/DLA60        (train.log)  or  --log-dir log  (workerlog.0)"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import run_guarded  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-dir", required=True, help="a log file, or a folder holding train.log / workerlog.0")
    a = p.parse_args()

    def go():
        from ppcls.utils.errors import ConfigError
        from ppcls.utils.log_tools import best_epochs, find_log, parse_log
        path = find_log(a.log_dir)
        best = best_epochs(parse_log(path))
        if not best:
            raise ConfigError(f"{path}: no evaluation results ([Eval][Epoch N][Avg] lines)")
        print("-" * 80)
        print(f"log: {path}")
        for key, (v, e) in best.items():
            print(f"best {key}: {v:.5f} at epoch {e} (error {100 * (1 - v):.3f}%)")
        print("-" * 80)
    run_guarded(go)


if __name__ == "__main__":
    main()
