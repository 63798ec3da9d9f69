"""Serve an exported model over HTTP (POST /predict, GET /health, GET /metrics).

    python deploy/serving/server.py --model-dir inference/DLA34 --port 8866 [-c deploy/configs/inference_cls.yaml]

See deploy/serving/README.md; ``--help`` lists the options. Runs from any directory; no installed
package is needed."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from ppcls.serving import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
