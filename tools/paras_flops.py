"""Parameters and FLOPs of any registered model, without torch and without paddle.flops.

    python tools/paras_flops.py -a RLA_ResNet50 [--input-size 224] [-o rla_channel=12] [--json]
    python tools/paras_flops.py --list

Prints the exact trainable parameter count, the conv+linear multiply-accumulates per image (decimal),
and the two figures of the RLA-Net paper's table as the paper prints them: params / 2^20 in 'M', and
FLOPs by its profiler's rule (BatchNorm 2 ops per element, pooling layers counted) / 2^30 in 'G' or
/ 2^20 in 'M' (see ppcls.utils.model_stats.count_paper_flops). --json prints one JSON object."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import run_guarded  # noqa: E402


def _option(text):
    import yaml
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-a", "--arch", help="a registered model name (see --list)")
    p.add_argument("-i", "--input-size", type=int, default=224, help="square input side (default 224)")
    p.add_argument("--class-num", type=int, default=None)
    p.add_argument("-o", "--option", type=_option, action="append", default=[],
                   help="a model option, e.g. -o rla_channel=12 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--list", action="store_true", help="list the registered model names")
    a = p.parse_args()
    if not a.list and not a.arch:
        p.error("-a/--arch is required (or --list)")

    def go():
        if a.list:
            from ppcls.arch import list_models
            print("\n".join(list_models()))
            return
        from ppcls.utils.model_stats import model_summary
        options = dict(a.option)
        if a.class_num is not None:
            options["class_num"] = a.class_num
        info = model_summary(a.arch, a.input_size, **options)
        if a.json:
            print(json.dumps(info))
            return
        s = a.input_size
        print(f"{info['name']}, input 3x{s}x{s}")
        print(f"  trainable params         {info['params']:,}")
        print(f"  conv+linear MACs / image {info['macs']:,}")
        print(f"  paper units (RLA-Net table): Param. {info['paper_params']}, FLOPs {info['paper_flops_str']} "
              f"({info['paper_flops']:,} by the paper's counting rule)")
    run_guarded(go)


if __name__ == "__main__":
    main()
