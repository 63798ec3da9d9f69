"""Accuracy and loss curves (training and validation) from a training log, as PNG files:
acc1_plot.png, acc5_plot.png and loss_plot.png (matplotlib, Agg backend: no display needed).

    python tools/eval_visual.py --log-dir output/RLA_ResNet50 [--out-dir plots]

--log-dir takes what tools/best.py takes (a log file, or a folder with train.log / workerlog.N);
the PNGs go next to the log unless --out-dir is given."""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.utils.errors import run_guarded  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-dir", required=True, help="a log file, or a folder holding train.log / workerlog.N")
    p.add_argument("--out-dir", default=None, help="where the PNGs go (default: the log's folder)")
    a = p.parse_args()

    def go():
        from ppcls.utils.errors import ConfigError
        from ppcls.utils.log_tools import find_log, parse_log, plot_curves
        path = find_log(a.log_dir)
        parsed = parse_log(path)
        if not parsed["eval"] and not parsed["train"]:
            raise ConfigError(f"{path}: no epoch summaries ([Train]/[Eval] ... [Avg] lines)")
        for f in plot_curves(parsed, a.out_dir or os.path.dirname(os.path.abspath(path))):
            print(f"wrote {f}")
    run_guarded(go)


if __name__ == "__main__":
    main()
