"""Attention masks or Grad-CAM as PNG panels (and VisualDL image records):

    python tools/visualize.py -c CONFIG [-o Global.pretrained_model=...] --mode attention|cam
        --images PATH [PATH ...] --out DIR [--class-id K] [--stage S] [--vdl DIR]

See ppcls/visual/cli.py."""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppcls.utils.errors import run_guarded  # noqa: E402


def main(argv=None):
    def go():
        from ppcls.visual.cli import main as visualize
        return visualize(argv)
    return run_guarded(go)


if __name__ == "__main__":
    main()
