"""Dynamic micro-batching in front of one predictor.

One worker thread owns the model: it loads it, warms it up and then runs every batch, so the
predictor is only ever touched by the thread that created it and the event loop never blocks on
inference. Requests reserve room for their images first (``reserve``), which is refused with
``QueueFull`` when the bounded queue has no room, then hand over the preprocessed images
(``submit``) and await a future that the worker resolves through the loop's thread-safe callback.

The worker takes the oldest queued image, then waits until ``max_batch`` images are queued or the
oldest has waited ``max_wait_ms``, and runs at most ``max_batch`` images together; images that queue
up while a batch runs go into the next one without further waiting once their wait is used up. A
request's images may span several batches; its answers keep the request's order.
"""
import asyncio
import collections
import threading
import time

import numpy as np

from ..utils.logger import logger


class QueueFull(Exception):
    """The queue has no room for the request's images (HTTP 503)."""


class NotReady(Exception):
    """The model is still loading or warming up, or the service is shutting down (HTTP 503)."""


class InferenceError(Exception):
    """The predictor failed on a batch (HTTP 500)."""


class Job:
    """One request's images: the worker fills ``results`` and resolves ``future`` on the loop."""

    __slots__ = ("loop", "future", "results", "remaining", "cancelled", "finished")

    def __init__(self, n, loop):
        self.loop = loop
        self.future = loop.create_future()
        self.results = [None] * n
        self.remaining = n
        self.cancelled = False  # set by the request on timeout: its queued images are dropped
        self.finished = False   # touched by the worker only

    def _resolve(self, value, is_error):
        if self.finished:
            return
        self.finished = True

        def settle():
            if not self.future.done():
                if is_error:
                    self.future.set_exception(value)
                else:
                    self.future.set_result(value)
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def deliver(self, index, result):
        if self.finished:
            return
        self.results[index] = result
        self.remaining -= 1
        if self.remaining == 0:
            self._resolve(self.results, False)

    def fail(self, exc):
        self._resolve(exc, True)


class Batcher:
    """``load()`` runs in the worker thread and returns the model: an object with
    ``infer(batch) -> list of results`` (a float32 NCHW array in, one result per image out) and
    ``warmup(max_batch)``. ``start()`` loads it, ``begin()`` lets the warm-up and the serving
    start, ``close()`` drains the queue and stops the worker."""

    def __init__(self, load, max_batch=8, max_wait_ms=5.0, queue_size=64, metrics=None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.load = load
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.capacity = int(queue_size)
        self.metrics = metrics
        self.model = None
        self.error = None          # why loading or warm-up failed (the service never becomes ready)
        self.loaded = threading.Event()
        self.ready = threading.Event()
        self._go = threading.Event()       # warm-up waits for it: the server is about to listen
        self._cond = threading.Condition()
        self._items = collections.deque()  # (job, index, array, enqueue time)
        self._pending = 0                  # images reserved or queued, not yet taken into a batch
        self._closing = False
        self._thread = None
        self.batches = 0
        self.images = 0

    # -- state ------------------------------------------------------------------------------------
    @property
    def pending(self):
        return self._pending

    @property
    def closing(self):
        return self._closing

    def start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="ppcls-batcher", daemon=True)
            self._thread.start()
        return self

    def begin(self):
        """Let the worker warm up and then serve (called once the server starts; until the warm-up
        ends, /health answers 503)."""
        self._go.set()

    def wait_loaded(self, timeout=None):
        """Block until the model is loaded; re-raise the loading error in the caller's thread."""
        if not self.loaded.wait(timeout):
            raise TimeoutError(f"the model did not load within {timeout} s")
        if self.model is None and self.error is not None:
            raise self.error
        return self.model

    # -- the request side (event loop) -------------------------------------------------------------
    def reserve(self, n):
        """Room for ``n`` images, or ``QueueFull`` / ``NotReady``; undo with ``release(n)``."""
        with self._cond:
            if self._closing:
                raise NotReady("the service is shutting down")
            if not self.ready.is_set():
                raise NotReady("the model is still warming up" if self.error is None
                               else f"the model failed to start: {self.error}")
            if self._pending + n > self.capacity:
                raise QueueFull(f"the queue is full ({self._pending} of {self.capacity} images waiting)")
            self._pending += n
        self._gauge()

    def release(self, n):
        with self._cond:
            self._pending -= n
        self._gauge()

    def submit(self, arrays, loop=None):
        """Queue the (already reserved) images of one request; returns its ``Job``."""
        job = Job(len(arrays), loop or asyncio.get_running_loop())
        now = time.monotonic()
        with self._cond:
            for i, a in enumerate(arrays):
                self._items.append((job, i, a, now))
            self._cond.notify()
        return job

    def cancel(self, job):
        """The request gave up (timeout): its queued images are dropped unrun."""
        job.cancelled = True

    def close(self, timeout=None):
        """Stop taking requests, finish every queued image, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._go.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    # -- the worker thread -------------------------------------------------------------------------
    def _gauge(self):
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._pending)

    def _main(self):
        try:
            self.model = self.load()
        except BaseException as e:  # reported by wait_loaded in the starting thread
            self.error = e
            self.loaded.set()
            return
        self.loaded.set()
        self._go.wait()
        if self._closing:
            return
        try:
            t0 = time.perf_counter()
            self.model.warmup(self.max_batch)
            logger.info(f"warm-up done in {time.perf_counter() - t0:.2f} s (batch sizes 1..{self.max_batch})")
        except Exception as e:
            self.error = e
            logger.error(f"warm-up failed, the service stays unready: {type(e).__name__}: {e}")
            self._fail_all(NotReady(f"the model failed to start: {e}"))
            return
        self.ready.set()
        if self.metrics is not None:
            self.metrics.ready.set(1)
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            if batch:
                self._run(batch)
        if self.metrics is not None:
            self.metrics.ready.set(0)

    def _next_batch(self):
        """Up to max_batch live images, [] when only cancelled ones were taken, None to stop."""
        with self._cond:
            while not self._items and not self._closing:
                self._cond.wait()
            if not self._items:
                return None
            deadline = self._items[0][3] + self.max_wait
            while len(self._items) < self.max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = []
            while self._items and len(batch) < self.max_batch:
                item = self._items.popleft()
                self._pending -= 1
                if not item[0].cancelled and not item[0].finished:
                    batch.append(item)
        self._gauge()
        return batch

    def _run(self, batch):
        t0 = time.perf_counter()
        try:
            results = self.model.infer(np.stack([item[2] for item in batch]))
            if len(results) != len(batch):
                raise InferenceError(f"the model returned {len(results)} results for {len(batch)} images")
        except Exception as e:
            logger.exception(f"inference failed on a batch of {len(batch)}")
            err = e if isinstance(e, InferenceError) else InferenceError(f"inference failed: {type(e).__name__}: {e}")
            for job, _, _, _ in batch:
                job.fail(err)
            if self.metrics is not None:
                self.metrics.error("inference")
            return
        dt = time.perf_counter() - t0
        self.batches += 1
        self.images += len(batch)
        if self.metrics is not None:
            self.metrics.batch(len(batch), dt)
        for (job, index, _, _), result in zip(batch, results):
            job.deliver(index, result)

    def _fail_all(self, exc):
        with self._cond:
            items, self._items = list(self._items), collections.deque()
            self._pending -= len(items)
        for job, _, _, _ in items:
            job.fail(exc)
