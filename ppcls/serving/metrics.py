"""Prometheus metrics of the service, in a registry of its own (several apps in one process do not
collide): requests by path and status, errors by kind, the /predict latency, the batch sizes the
batcher formed, the time per batch, the queue depth, readiness."""
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)

# the kinds of ``ppcls_errors_total``
ERROR_KINDS = ("bad_json", "bad_request", "bad_base64", "empty", "format", "corrupt", "truncated", "pixels",
               "preprocess", "body_too_large", "too_many_images", "content_type", "queue_full", "not_ready",
               "timeout", "inference", "internal")


class Metrics:
    def __init__(self, max_batch):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ppcls_http_requests", "HTTP requests answered, by path and status code",
                                ["path", "status"], registry=r)
        self.errors = Counter("ppcls_errors", "Requests refused or failed, by kind", ["kind"], registry=r)
        self.latency = Histogram("ppcls_predict_latency_seconds",
                                 "Latency of successful /predict requests (body read to answer)",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("ppcls_batch_size", "Images per batch run by the predictor",
                                    buckets=tuple(range(1, int(max_batch) + 1)), registry=r)
        self.batch_seconds = Histogram("ppcls_batch_inference_seconds", "Predictor time per batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("ppcls_images", "Images classified", registry=r)
        self.queue_depth = Gauge("ppcls_queue_depth", "Images admitted and waiting for a batch", registry=r)
        self.in_flight = Gauge("ppcls_requests_in_flight", "/predict requests being handled", registry=r)
        self.ready = Gauge("ppcls_ready", "1 once the model is loaded and warmed up", registry=r)
        self.model_info = Gauge("ppcls_model_info", "The served model", ["model"], registry=r)
        for kind in ERROR_KINDS:  # every kind shows up (as 0) from the start
            self.errors.labels(kind=kind)

    def set_model(self, name):
        self.model_info.labels(model=str(name)).set(1)

    def error(self, kind):
        self.errors.labels(kind=kind if kind in ERROR_KINDS else "internal").inc()

    def request(self, path, status):
        self.requests.labels(path=path, status=str(status)).inc()

    def batch(self, size, seconds):
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.images.inc(size)

    def render(self):
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
