"""The FastAPI application: ``POST /predict``, ``GET /health``, ``GET /metrics``.

``create_app(batcher, options, metrics)`` builds it around a started (or startable) ``Batcher``;
``ppcls.serving.cli.main`` runs it under uvicorn. Request flow of /predict: readiness and queue room
are checked before the body is read; the body is read under the size limit (``ServiceMiddleware``);
the images are counted and their room in the queue reserved; they are decoded and preprocessed in a
small thread pool (never on the event loop); the batcher runs them and the answer keeps the
request's order. Every refusal is one JSON line ``{"error": "..."}`` with a 4xx/5xx status.
"""
import asyncio
import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..utils.logger import logger
from .batcher import InferenceError, NotReady, QueueFull
from .inputs import JSON_FORM, RequestError, decode_image, parse_json_images

PATHS = ("/predict", "/health", "/metrics")


@dataclasses.dataclass
class ServeOptions:
    max_batch: int = 8
    max_wait_ms: float = 5.0
    queue_size: int = 64           # images admitted and not yet in a batch
    timeout: float = 30.0          # seconds per /predict request, body read to answer
    max_body_bytes: int = 10 << 20
    max_pixels: int = 50_000_000   # per image, read from the header before decoding
    decode_workers: int = 2
    max_images: int = 0            # per request; 0: the queue size
    retry_after: int = 1           # seconds, in the Retry-After header of 503 answers

    def __post_init__(self):
        if not self.max_images:
            self.max_images = self.queue_size


class BodyTooLarge(Exception):
    pass


@dataclasses.dataclass
class RequestStats:
    """/predict requests that reached the application and those whose answer was sent in full."""
    accepted: int = 0
    answered: int = 0
    by_status: dict = dataclasses.field(default_factory=dict)


class ServiceMiddleware:
    """Pure ASGI: refuses bodies over the limit (from Content-Length before reading, else while
    reading), counts requests by path and status, and which /predict requests were answered."""

    def __init__(self, app, max_body, metrics, stats):
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.stats = stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in PATHS else "other"
        predict = path == "/predict"
        status = [None]
        if predict:
            self.stats.accepted += 1

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if predict and message["type"] == "http.response.body" and not message.get("more_body", False):
                self.stats.answered += 1
                self.stats.by_status[status[0]] = self.stats.by_status.get(status[0], 0) + 1

        seen = 0

        async def receive_limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(f"the body is over the limit of {self.max_body} bytes")
            return message

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and not length.isdigit():
                await self._refuse(scope, send_counted, 400, "bad_request", f"bad Content-Length {length[:40]!r}")
                return
            if length is not None and int(length) > self.max_body:
                # read (and drop) the body first, so the client, still sending it, sees the answer
                drained = await self._drain(receive, 0)
                await self._refuse(scope, send_counted, 413, "body_too_large",
                                   f"the body of {int(length)} bytes is over the limit of {self.max_body} bytes",
                                   close=not drained)
                return
            try:
                await self.app(scope, receive_limited, send_counted)
            except BodyTooLarge as e:  # from an endpoint that does not handle it itself
                if status[0] is None:
                    drained = await self._drain(receive, seen)
                    await self._refuse(scope, send_counted, 413, "body_too_large", str(e), close=not drained)
        finally:
            self.metrics.request(path, status[0] or 500)

    async def _drain(self, receive, seen):
        """Read and drop the rest of a refused body, up to 8 times the limit; False when it is longer
        (or the client left): then the connection is closed after the answer."""
        cap = 8 * self.max_body
        while seen <= cap:
            message = await receive()
            if message["type"] != "http.request":
                return False
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False

    async def _refuse(self, scope, send, code, kind, message, close=False):
        self.metrics.error(kind)
        headers = {"Connection": "close"} if close else None
        await JSONResponse({"error": message}, status_code=code, headers=headers)(scope, None, send)


def create_app(batcher, options=None, metrics=None):
    from .metrics import Metrics
    opts = options or ServeOptions()
    metrics = metrics or Metrics(opts.max_batch)
    stats = RequestStats()
    pool = ThreadPoolExecutor(max_workers=opts.decode_workers, thread_name_prefix="ppcls-decode")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        batcher.begin()  # warm-up starts now; /health says 503 until it ends
        yield
        # uvicorn has finished the requests in flight by now; the batcher runs what is still queued
        await asyncio.get_running_loop().run_in_executor(None, batcher.close, opts.timeout + 10)
        pool.shutdown(wait=True)
        by_status = ", ".join(f"{k}: {v}" for k, v in sorted(stats.by_status.items(), key=lambda kv: str(kv[0])))
        logger.info(f"shutdown: {stats.accepted} /predict requests accepted, {stats.answered} answered "
                    f"({by_status or 'none'}); {batcher.batches} batches, {batcher.images} images")

    app = FastAPI(title="ppcls serving", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.options, app.state.metrics, app.state.stats = batcher, opts, metrics, stats
    app.add_middleware(ServiceMiddleware, max_body=opts.max_body_bytes, metrics=metrics, stats=stats)

    def refuse(status, kind, message, retry=False):
        metrics.error(kind)
        headers = {"Retry-After": str(opts.retry_after)} if retry else None
        return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request, exc):
        logger.exception(f"{request.method} {request.url.path} failed")
        metrics.error("internal")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"},
                            status_code=500)

    async def read_images(request):
        ctype = request.headers.get("content-type")
        mtype = (ctype or "").split(";", 1)[0].strip().lower()
        if mtype == "application/json":
            return parse_json_images(await request.body(), opts.max_images)
        if mtype == "multipart/form-data":
            try:
                form = await request.form(max_files=opts.max_images, max_fields=opts.max_images)
            except StarletteHTTPException as e:
                if "Too many files" in str(e.detail):
                    raise RequestError(413, "too_many_images", f"the request has more than {opts.max_images} files, "
                                                               "the limit") from None
                raise RequestError(400, "bad_request", f"malformed multipart body: {e.detail}") from None
            except (BodyTooLarge, ClientDisconnect):
                raise
            except Exception as e:
                raise RequestError(400, "bad_request", f"malformed multipart body: {type(e).__name__}: {e}") from None
            try:
                files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
                if not files:
                    raise RequestError(422, "bad_request", "the multipart body holds no files (send each image as a file part)")
                return [await f.read() for f in files]
            finally:
                await form.close()
        what = f"unsupported Content-Type {ctype!r}" if ctype else "no Content-Type"
        raise RequestError(415, "content_type", f"{what}: {JSON_FORM} as application/json or the images as "
                                                "multipart/form-data files")

    @app.post("/predict")
    async def predict(request: Request):
        t0 = time.perf_counter()
        if not batcher.ready.is_set() or batcher.closing:
            return refuse(503, "not_ready", "the service is shutting down" if batcher.closing else
                          "the model is still warming up" if batcher.error is None else
                          f"the model failed to start: {batcher.error}", retry=True)
        if batcher.pending >= batcher.capacity:
            return refuse(503, "queue_full", f"the queue is full ({batcher.pending} of {batcher.capacity} images "
                                             "waiting); retry later", retry=True)
        loop = asyncio.get_running_loop()
        model = batcher.model
        state = {"reserved": 0, "job": None}

        async def handle():
            images = await read_images(request)
            batcher.reserve(len(images))
            state["reserved"] = len(images)
            arrays = await asyncio.gather(
                *[loop.run_in_executor(pool, decode_image, data, model.preprocess, model.input_shape,
                                       opts.max_pixels, f"images[{i}]") for i, data in enumerate(images)],
                return_exceptions=True)
            del images
            for a in arrays:
                if isinstance(a, BaseException):
                    raise a
            state["job"] = batcher.submit(arrays, loop)
            state["reserved"] = 0
            return await state["job"].future

        metrics.in_flight.inc()
        try:
            try:
                results = await asyncio.wait_for(handle(), opts.timeout)
            except asyncio.TimeoutError:  # (a body over the limit raises BodyTooLarge: ServiceMiddleware answers it)
                if state["job"] is not None:
                    batcher.cancel(state["job"])
                raise RequestError(504, "timeout", f"no answer within the request timeout of {opts.timeout:g} s") from None
        except RequestError as e:
            return refuse(e.status, e.kind, e.message)
        except QueueFull as e:
            return refuse(503, "queue_full", f"{e}; retry later", retry=True)
        except NotReady as e:
            return refuse(503, "not_ready", str(e), retry=True)
        except InferenceError as e:
            return refuse(500, "inference", str(e))
        except ClientDisconnect:
            return refuse(400, "bad_request", "the client disconnected before sending the whole body")
        finally:
            if state["reserved"]:
                batcher.release(state["reserved"])
            metrics.in_flight.dec()
        latency = time.perf_counter() - t0
        metrics.latency.observe(latency)
        return JSONResponse({"model": model.name, "latency_ms": round(1000 * latency, 3), "results": results})

    @app.get("/health")
    async def health():
        if batcher.ready.is_set() and not batcher.closing:
            return JSONResponse({"status": "ready", "model": batcher.model.name, "max_batch": batcher.max_batch,
                                 "queue_size": batcher.capacity})
        if batcher.closing:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        if batcher.error is not None:
            return JSONResponse({"status": "failed", "error": " ".join(str(batcher.error).split())}, status_code=503)
        return JSONResponse({"status": "warming up"}, status_code=503, headers={"Retry-After": str(opts.retry_after)})

    @app.get("/metrics")
    async def prometheus():
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    return app
