"""Convert an original checkpoint (PyTorch .pth/.pth.tar, or .npz with the same keys) to .pdparams.

    python tools/convert_weights.py -a DLA60 --src dla60-24839fc4.pth --dst DLA60_pretrained.pdparams
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import run_guarded  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-a", "--arch", required=True, help="registered model name (Arch.name)")
    parser.add_argument("--src", required=True, help="original checkpoint (.pth, .pth.tar, .pt or .npz)")
    parser.add_argument("--dst", required=True, help="output .pdparams path")
    parser.add_argument("--class-num", type=int, default=None, help="class count of the checkpoint's classifier")
    args = parser.parse_args()

    def go():
        from ppcls.arch.convert import convert_checkpoint
        kwargs = {} if args.class_num is None else {"class_num": args.class_num}
        dst, n, dropped = convert_checkpoint(args.arch, args.src, args.dst, kwargs)
        print(f"converted {n} tensors to {dst}" + (f"; dropped {len(dropped)} unused keys" if dropped else ""))
    run_guarded(go)


if __name__ == "__main__":
    main()
