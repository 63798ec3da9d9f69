"""Parameters and FLOPs of a registered model, without torch or paddle.flops.

    python tools/paras_flops.py -a RLA_ResNet50 [--input-size 224] [--json]

Prints the exact trainable parameter count, the conv+linear multiply-accumulates per image, and the
two figures of the RLA-Net paper's table in the paper's units (params / 2^20 'M'; FLOPs by its
profiler's rule / 2^30 'G' or / 2^20 'M')."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import run_guarded  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-a", "--arch", required=True)
    p.add_argument("-i", "--input-size", type=int, default=224)
    p.add_argument("--class-num", type=int, default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    def go():
        from ppcls.utils.model_stats import model_summary
        info = model_summary(a.arch, a.input_size, a.class_num)
        if a.json:
            print(json.dumps(info))
        else:
            print(f"{info['name']} @ {a.input_size}x{a.input_size}: params {info['params']:,}; "
                  f"conv+linear MACs {info['macs']:,}; paper units: Param. {info['paper_params']}, "
                  f"FLOPs {info['paper_flops_str']} ({info['paper_flops']:,})")
    run_guarded(go)


if __name__ == "__main__":
    main()
