"""python tools/export_model.py -c CONFIG -o Global.pretrained_model=... [-o key=value ...]"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.engine.cli import parse_args, run_guarded  # noqa: E402


def main():
    args = parse_args(__doc__)

    def go():
        from ppcls.utils.config import get_config
        from ppcls.inference.export import export as run
        run(get_config(args.config, args.override))
    run_guarded(go)


if __name__ == "__main__":
    main()
