"""Load a running service (deploy/serving/server.py) and report requests/s, latency percentiles and
the batch sizes the server formed (from its /metrics) at each concurrency.

    python deploy/serving/bench.py --url http://127.0.0.1:8866 --concurrency 1,4,16 --requests 200

The images are the JPEGs under --images (cycled), else generated photo-like JPEGs of --size pixels;
each request carries --per-request of them as hubserving JSON (or multipart with --multipart)."""
import argparse
import asyncio
import base64
import glob
import json
import os
import sys
import time

import numpy as np


def make_images(folder, size, count=16, seed=0):
    if folder:
        files = sorted(f for ext in ("jpg", "jpeg", "png") for f in glob.glob(os.path.join(folder, "**", "*." + ext),
                                                                                recursive=True))
        if not files:
            sys.exit(f"error: --images {folder}: no .jpg/.jpeg/.png files")
        return [open(f, "rb").read() for f in files]
    import cv2
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(count):
        img = cv2.resize((rng.rand(size // 8, size // 8, 3) * 255).astype(np.uint8), (size, size))
        img = np.clip(img.astype(int) + rng.randint(-12, 12, img.shape), 0, 255).astype(np.uint8)
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def batch_histogram(metrics_text):
    """{batch size: count} from the cumulative ppcls_batch_size buckets of a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families
    cum = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "ppcls_batch_size":
            for s in family.samples:
                if s.name.endswith("_bucket") and s.labels["le"] != "+Inf":
                    cum[int(float(s.labels["le"]))] = s.value
    out, prev = {}, 0.0
    for size in sorted(cum):
        out[size] = int(round(cum[size] - prev))
        prev = cum[size]
    return out


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def run_level(url, bodies, concurrency, requests, timeout):
    import httpx
    latencies, statuses = [], {}
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        async def worker():
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                content, headers = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    r = await client.post("/predict", content=content, headers=headers)
                    code = r.status_code
                except httpx.HTTPError as e:
                    code = type(e).__name__
                dt = time.perf_counter() - t0
                statuses[code] = statuses.get(code, 0) + 1
                if code == 200:
                    latencies.append(dt)
        before = (await client.get("/metrics")).text
        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
        after = (await client.get("/metrics")).text
    hist_before, hist_after = batch_histogram(before), batch_histogram(after)
    hist = {k: hist_after.get(k, 0) - hist_before.get(k, 0) for k in hist_after}
    return {"concurrency": concurrency, "requests": requests, "wall_s": wall, "req_per_s": requests / wall,
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
            "statuses": statuses, "batch_sizes": {k: v for k, v in hist.items() if v}}


def encode(images, per_request, multipart):
    bodies = []
    for i in range(len(images)):
        group = [images[(i + j) % len(images)] for j in range(per_request)]
        if multipart:
            boundary = "ppclsbench"
            parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"{j}.jpg\"\r\n"
                     f"Content-Type: image/jpeg\r\n\r\n".encode() + g + b"\r\n" for j, g in enumerate(group)]
            bodies.append((b"".join(parts) + f"--{boundary}--\r\n".encode(),
                           {"content-type": f"multipart/form-data; boundary={boundary}"}))
        else:
            doc = {"images": [base64.b64encode(g).decode("ascii") for g in group]}
            bodies.append((json.dumps(doc).encode(), {"content-type": "application/json"}))
    return bodies


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8866")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated levels (default: %(default)s)")
    p.add_argument("--requests", type=int, default=200, help="requests per level (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="requests before each level, not counted")
    p.add_argument("--images", default=None, help="folder of images to send (default: generated JPEGs)")
    p.add_argument("--size", type=int, default=224, help="side of the generated JPEGs (default: %(default)s)")
    p.add_argument("--per-request", type=int, default=1, help="images per request (default: %(default)s)")
    p.add_argument("--multipart", action="store_true", help="send multipart files instead of JSON")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--json", action="store_true", help="print one JSON line per level instead of a table")
    args = p.parse_args(argv)
    import httpx
    try:
        health = httpx.get(args.url + "/health", timeout=5)
    except httpx.HTTPError as e:
        sys.exit(f"error: {args.url}: {type(e).__name__}: {e}")
    if health.status_code != 200:
        sys.exit(f"error: {args.url}/health answered {health.status_code}: {health.text}")
    bodies = encode(make_images(args.images, args.size), args.per_request, args.multipart)
    print(f"# {args.url}: model {health.json().get('model')}, max_batch {health.json().get('max_batch')}, "
          f"{args.per_request} image(s) per request, {'multipart' if args.multipart else 'JSON'}")
    if not args.json:
        print(f"{'conc':>4} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses / batch sizes formed")
    for level in [int(c) for c in args.concurrency.split(",")]:
        if args.warmup:
            asyncio.run(run_level(args.url, bodies, level, args.warmup, args.timeout))
        r = asyncio.run(run_level(args.url, bodies, level, args.requests, args.timeout))
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{level:4d} {r['requests']:8d} {r['req_per_s']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}  "
                  f"{r['statuses']} / {r['batch_sizes']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
