"""The ``ppcls`` command: one subcommand per task, each a thin call into the package.

    ppcls train -c configs/DLA/DLA60.yaml -o Global.epochs=10
    python -m paddle.distributed.launch --nproc_per_node 2 $(command -v ppcls) train -c ...
    ppcls models 'DLA*'
    ppcls predict --model DLA34 --pretrained True cat.jpg

The scripts under tools/ and deploy/ call ``run(<subcommand>)`` with their own arguments, so
``python tools/train.py -c ...`` and ``ppcls train -c ...`` are the same program. Errors print one line
and exit with the codes of ``ppcls.utils.errors`` (2: your input, 3: the run failed).
"""
import argparse
import sys

from ..utils.errors import run_guarded
from . import commands

# subcommand: (function in commands, one-line help)
SUBCOMMANDS = {
    "train": (commands.train, "train a model from a config (-c) with overrides (-o)"),
    "eval": (commands.evaluate, "evaluate a checkpoint over the config's eval set"),
    "infer": (commands.infer, "predict the config's Infer images with the dygraph model"),
    "export": (commands.export, "export to Paddle Inference (inference.json / .pdiparams / inference.yml)"),
    "onnx": (commands.onnx, "convert an exported model to ONNX and check it in onnxruntime"),
    "convert": (commands.convert, "convert another implementation's checkpoint to .pdparams"),
    "models": (commands.models, "list the registered models with params, MACs and weights"),
    "predict": (commands.predict, "classify images with a registered model, no config file needed"),
    "quantize": (commands.quantize, "INT8 post-training quantization of an exported model (onnxruntime QDQ)"),
    "deploy": (commands.deploy, "classify images with an exported model (Paddle Inference / onnxruntime)"),
    "benchmark": (commands.benchmark, "throughput of training, inference, the predictor and onnxruntime"),
    "flops": (commands.flops, "parameters and FLOPs of a model (the RLA-Net paper's units too)"),
    "visualize": (commands.visualize, "attention masks and Grad-CAM of a config's model as PNG / VisualDL images"),
    "serve": (commands.serve, "an HTTP inference service for an exported model"),
    "det": (commands.det, "detectors on PaddleDetection with the zoo's backbones (train / eval / infer / export)"),
    "seg": (commands.seg, "segmenters on PaddleSeg with the zoo's backbones (train / val / predict / export)"),
}


def _parser():
    p = argparse.ArgumentParser(prog="ppcls", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_text) in SUBCOMMANDS.items():
        own_parser = commands.ARGUMENTS[fn.__name__] is commands.passthrough  # it answers --help itself
        sp = sub.add_parser(name, help=help_text, description=fn.__doc__, add_help=not own_parser,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        commands.ARGUMENTS[fn.__name__](sp)
        sp.set_defaults(func=fn)
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS and commands.ARGUMENTS[SUBCOMMANDS[argv[0]][0].__name__] is commands.passthrough:
        # a command with its own parser gets everything after its name, --help included
        run_guarded(SUBCOMMANDS[argv[0]][0], argparse.Namespace(rest=argv[1:]))
        return 0
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from ..version import __version__
        print(f"ppcls {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    run_guarded(args.func, args)
    return 0


def run(command, argv=None):
    """``ppcls <command> <argv>`` for the tools/ scripts (their own command-line arguments by default)."""
    sys.exit(main([command] + list(sys.argv[1:] if argv is None else argv)))
