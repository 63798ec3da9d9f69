"""HTTP inference service for exported models (FastAPI + uvicorn): dynamic micro-batching in front
of one predictor thread, a bounded queue, Prometheus metrics, graceful shutdown.

    python deploy/serving/server.py --model-dir inference/DLA34 --port 8866

``main(argv)`` is the command line (``ppcls serve``); ``create_app`` builds the ASGI application."""


def main(argv=None):
    from .cli import main as _main
    return _main(argv)


def create_app(batcher, options=None, metrics=None):
    from .app import create_app as _create_app
    return _create_app(batcher, options, metrics)
