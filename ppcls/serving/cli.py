"""``main(argv)``: the command line of the service (deploy/serving/server.py, ``ppcls serve``).

    python deploy/serving/server.py --model-dir inference/DLA34 --port 8866

The deploy config (``-c``, default deploy/configs/inference_cls.yaml, with ``-o key=value``
overrides) is the one predict_cls.py reads, so top-k and the label list are the same; ``--model-dir``,
``--backend`` (``--use-onnx``) and ``--threads`` set its Global.inference_model_dir / backend /
cpu_num_threads; the deploy config's ``backend: auto`` follows the export's probe (``backend.json``).
Exit codes: 0 after a graceful shutdown (SIGTERM or SIGINT: in-flight requests are answered first),
2 for a usage error (one line on stderr), 1 for a bug."""
import argparse
import os
import signal
import socket
import sys

from ..utils.errors import ConfigError, run_guarded

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join("deploy", "configs", "inference_cls.yaml")


def build_parser():
    p = argparse.ArgumentParser(prog="ppcls serve", description="HTTP inference service for an exported model: "
                                "POST /predict, GET /health, GET /metrics")
    p.add_argument("--model-dir", required=True, help="exported model (tools/export_model.py)")
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="deploy config (default: %(default)s)")
    p.add_argument("-o", "--override", action="append", default=[], help="override a deploy config value (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8866, help="port (default: %(default)s; 0: a free one, logged)")
    p.add_argument("--max-batch", type=int, default=8, help="images per predictor run (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long the oldest queued image waits for a batch to fill (default: %(default)s)")
    p.add_argument("--queue-size", type=int, default=64,
                   help="images admitted and waiting; beyond it requests get 503 (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request before 504 (default: %(default)s)")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="request body limit in MiB (default: %(default)s)")
    p.add_argument("--max-pixels", type=int, default=50_000_000,
                   help="pixel limit per image, checked from its header (default: %(default)s; 0: none)")
    p.add_argument("--backend", choices=["auto", "paddle", "onnxruntime"], default=None,
                   help="predictor backend (default: the deploy config's, auto: the faster one in the export's probe)")
    p.add_argument("--use-onnx", action="store_true", help="the same as --backend onnxruntime")
    p.add_argument("--threads", type=int, default=None, help="predictor CPU threads (default: the config's, 0 = all cores)")
    p.add_argument("--decode-workers", type=int, default=2, help="threads decoding and preprocessing images (default: %(default)s)")
    p.add_argument("--max-connections", type=int, default=64,
                   help="concurrent connections; beyond it uvicorn answers 503 (default: %(default)s)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def resolve_config(args):
    from ..utils.config import apply_override, load_yaml_with_bases
    path = args.config
    if not os.path.isfile(path) and not os.path.isabs(path) and os.path.isfile(os.path.join(ROOT, path)):
        path = os.path.join(ROOT, path)
    if not os.path.isfile(path):
        raise ConfigError(f"-c {args.config}: deploy config not found")
    cfg = load_yaml_with_bases(path)
    for item in args.override:
        apply_override(cfg, item)
    if not os.path.isdir(args.model_dir):
        raise ConfigError(f"--model-dir {args.model_dir}: not found (export a model with tools/export_model.py)")
    g = cfg.setdefault("Global", {}) or {}
    cfg["Global"] = g
    g["inference_model_dir"] = args.model_dir
    if args.use_onnx:
        if args.backend not in (None, "onnxruntime"):
            raise ConfigError(f"--use-onnx contradicts --backend {args.backend}")
        args.backend = "onnxruntime"
    if args.backend:
        g["backend"] = args.backend
        g["use_onnx"] = False
    if args.threads is not None:
        g["cpu_num_threads"] = args.threads
    return cfg


def check_options(args):
    checks = [("--max-batch", args.max_batch >= 1), ("--max-wait-ms", args.max_wait_ms >= 0),
              ("--queue-size", args.queue_size >= 1), ("--timeout", args.timeout > 0),
              ("--max-body-mb", args.max_body_mb > 0), ("--max-pixels", args.max_pixels >= 0),
              ("--decode-workers", args.decode_workers >= 1), ("--max-connections", args.max_connections >= 1),
              ("--port", 0 <= args.port <= 65535), ("--threads", args.threads is None or args.threads >= 0)]
    for name, ok in checks:
        if not ok:
            raise ConfigError(f"{name}: out of range ({getattr(args, name[2:].replace('-', '_'))})")


def listen(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and without it the
    # two writes of each response (headers, body) meet the client's delayed ACK: +40 ms per request
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def serve(args):
    check_options(args)
    cfg = resolve_config(args)
    sock = listen(args.host, args.port)  # usage errors stop here, before Paddle is imported
    try:
        import prometheus_client
        import uvicorn

        from .app import ServeOptions, create_app
        from .metrics import Metrics
        try:
            import python_multipart  # noqa: F401  (Starlette's multipart parser; older releases: multipart)
        except ImportError:
            import multipart  # noqa: F401
    except ImportError as e:
        sock.close()
        raise ConfigError(f"serving needs {e.name or e}: pip install fastapi uvicorn python-multipart "
                          "prometheus_client") from None
    from ..utils.logger import logger
    from .batcher import Batcher
    from .model import ServedModel

    prometheus_client.disable_created_metrics()  # no *_created series: this process serves one app
    opts = ServeOptions(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, queue_size=args.queue_size,
                        timeout=args.timeout, max_body_bytes=int(args.max_body_mb * (1 << 20)),
                        max_pixels=args.max_pixels, decode_workers=args.decode_workers)
    metrics = Metrics(opts.max_batch)
    batcher = Batcher(lambda: ServedModel(cfg), max_batch=opts.max_batch, max_wait_ms=opts.max_wait_ms,
                      queue_size=opts.queue_size, metrics=metrics).start()
    model = batcher.wait_loaded()  # a bad model dir or config stops here with one line
    metrics.set_model(model.name)
    app = create_app(batcher, opts, metrics)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info(f"serving {model.name} ({model.backend_label}) "
                f"on http://{shown}:{port} (max_batch {opts.max_batch}, max_wait_ms {opts.max_wait_ms:g}, "
                f"queue_size {opts.queue_size}); ready after warm-up")
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.access_log, lifespan="on",
                            limit_concurrency=args.max_connections,
                            timeout_graceful_shutdown=int(opts.timeout) + 5)
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT itself (stop accepting, answer what is in flight, lifespan
    # shutdown) and afterwards re-raises the signal to the handler it found: with this one a
    # SIGTERM ends with exit code 0 instead of the default handler killing the process.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run(sockets=[sock])
    if not server.started:
        raise ConfigError(f"the server on {host}:{port} did not start (see the log above)")
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_guarded(serve, args)


if __name__ == "__main__":  # pragma: no cover - use deploy/serving/server.py or `ppcls serve`
    sys.exit(main())
