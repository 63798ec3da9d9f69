"""Best validation top-1 / top-5 and the epochs reaching them, from a training log.

    python tools/best.py --log-dir output/RLA_ResNet50     (its train.log)
    python tools/best.py --log-dir log                     (a launch's workerlog.0)
    python tools/best.py --log-dir path/to/train.log

The EMA model's evaluations, when the run has EMA on, are reported on their own lines."""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.utils.errors import run_guarded  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-dir", required=True, help="a log file, or a folder holding train.log / workerlog.N")
    a = p.parse_args()

    def go():
        from ppcls.utils.errors import ConfigError
        from ppcls.utils.log_tools import best_epochs, find_log, parse_log
        path = find_log(a.log_dir)
        parsed = parse_log(path)
        best = best_epochs(parsed)
        if not best:
            raise ConfigError(f"{path}: no evaluation results ([Eval][Epoch N][Avg] lines with top1/top5)")
        print("-" * 80)
        print(f"log: {path} ({len(parsed['eval'])} evaluated epochs)")
        for tag, kind in (("", "eval"), ("EMA ", "eval_ema")):
            for key, (v, e) in best_epochs(parsed, kind=kind).items():
                print(f"best {tag}{key}: {v:.5f} at epoch {e} (error {100 * (1 - v):.3f}%)")
        print("-" * 80)
    run_guarded(go)


if __name__ == "__main__":
    main()
