"""Classify images with an exported model through Paddle Inference (or onnxruntime).

    python deploy/python/predict_cls.py -c deploy/configs/inference_cls.yaml \
        -o Global.inference_model_dir=inference/DLA34 -o Global.infer_imgs=images/
Runs from the repository root or from deploy/; no installed package is needed."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from ppcls.engine.cli import parse_args, run_guarded  # noqa: E402


def main():
    args = parse_args(__doc__)

    def go():
        from ppcls.inference.predictor import predict_folder
        from ppcls.utils.config import apply_override, load_yaml_with_bases
        cfg = load_yaml_with_bases(args.config)
        for item in args.override:
            apply_override(cfg, item)
        predict_folder(cfg)
    run_guarded(go)


if __name__ == "__main__":
    main()
