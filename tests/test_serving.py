"""The HTTP service (ppcls/serving, deploy/serving/server.py): real server processes on 127.0.0.1,
answers equal to predict_cls.py's, micro-batching under concurrency, hostile input, overload,
timeouts, readiness, graceful shutdown under load; plus decode_rgb's checks and the batcher
in-process."""
import asyncio
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import paddle
import pytest

from engine_utils import ROOT
from ppcls.data.preprocess.ops import DecodeError
from ppcls.inference import pipeline
from ppcls.inference.pipeline import decode_rgb

SERVER = os.path.join(ROOT, "deploy", "serving", "server.py")
DEPLOY_CFG = os.path.join(ROOT, "deploy", "configs", "inference_cls.yaml")
LABELS = ["cat", "dog", "bird"]


# -- fixtures: an exported model, images, predict_cls.py's answers -------------------------------
def smooth_image(rng, h, w):
    small = (rng.rand(max(2, h // 8), max(2, w // 8), 3) * 255).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(img, quality=90):
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


@pytest.fixture(scope="module")
def exported(module_tmp):
    from ppcls.arch import build_model
    from ppcls.inference.export import export
    from ppcls.inference.pipeline import Preprocess, read_rgb
    from ppcls.inference.predictor import predict_folder
    from ppcls.utils.config import load_yaml_with_bases

    tmp = module_tmp("serving")
    rng = np.random.RandomState(0)
    imgs = tmp / "images"
    imgs.mkdir()
    for i in range(24):
        h, w = int(rng.randint(24, 120)), int(rng.randint(24, 120))
        ext = ".png" if i % 4 == 3 else ".jpg"
        data = cv2.imencode(ext, cv2.cvtColor(smooth_image(rng, h, w), cv2.COLOR_RGB2BGR))[1].tobytes()
        (imgs / f"img{i:02d}{ext}").write_bytes(data)
    norm = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                               "order": ""}}
    ops = [{"ResizeImage": {"size": [32, 32]}}, norm, {"ToCHWImage": None}]
    # DLA46_c with random weights, its classifier rescaled so that the scores vary between images
    paddle.seed(0)
    model = build_model({"name": "DLA46_c", "class_num": 3})
    model.eval()
    pre = Preprocess(ops)
    x = np.stack([pre(read_rgb(str(f))) for f in sorted(imgs.iterdir())])
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x)).numpy()
    scale = 1.5 / max(1e-6, float(logits.std(axis=0).mean()))
    sd = model.state_dict()
    sd["fc.weight"].set_value(sd["fc.weight"] * scale)
    sd["fc.bias"].set_value(paddle.to_tensor((sd["fc.bias"].numpy() - logits.mean(axis=0)) * scale))
    weights = str(tmp / "w")
    paddle.save(model.state_dict(), weights + ".pdparams")
    labels = tmp / "labels.txt"
    labels.write_text("".join(f"{i} {n}\n" for i, n in enumerate(LABELS)))
    inf = str(tmp / "inference")
    export({"Global": {"image_shape": [3, 32, 32], "save_inference_dir": inf, "pretrained_model": weights},
            "Arch": {"name": "DLA46_c", "class_num": 3},
            "Infer": {"transforms": ops, "PostProcess": {"name": "Topk", "topk": 2, "class_id_map_file": str(labels)}}})
    cfg = load_yaml_with_bases(DEPLOY_CFG)
    cfg["Global"].update({"inference_model_dir": inf, "infer_imgs": str(imgs)})
    reference = {os.path.basename(r["file_name"]): {k: r[k] for k in ("class_ids", "scores", "label_names")}
                 for r in predict_folder(cfg)}
    assert len(reference) == 24
    assert len({tuple(r["class_ids"]) for r in reference.values()}) > 1, "the scores should vary between images"
    files = {f.name: f.read_bytes() for f in sorted(imgs.iterdir())}
    return {"dir": inf, "images": files, "reference": reference, "tmp": tmp}


class Server:
    """deploy/serving/server.py in a subprocess on a free port (--port 0; the port is read from its log)."""

    def __init__(self, model_dir, *args, wait_ready=True):
        self.proc = subprocess.Popen([sys.executable, SERVER, "--model-dir", model_dir, "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines = []
        self.url = None
        self._have_url = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._have_url.wait(120) or self.url is None:
            self.proc.kill()
            raise AssertionError("the server did not start:\n" + self.log)
        if wait_ready:
            self.wait_ready()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(r" on (http://127\.0\.0\.1:\d+) ", line)
            if m:
                self.url = m.group(1)
                self._have_url.set()
        self._have_url.set()

    @property
    def log(self):
        return "".join(self.lines)

    def wait_ready(self, timeout=120):
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log
            time.sleep(0.05)
        raise AssertionError("not ready:\n" + self.log)

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture(scope="module")
def server(exported):
    s = Server(exported["dir"], "--max-pixels", "30000000", "--max-body-mb", "4", "--queue-size", "64")
    yield s
    assert s.stop() == 0, s.log


def json_body(images):
    return {"images": [base64.b64encode(d).decode("ascii") for d in images]}


def post_json(client, url, images):
    return client.post(url + "/predict", json=json_body(images))


def post_files(client, url, named):
    return client.post(url + "/predict", files=[("images", (n, d, "application/octet-stream")) for n, d in named])


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else None


def batch_sizes(text):
    cum = {int(float(m.group(1))): float(m.group(2))
           for m in re.finditer(r'^ppcls_batch_size_bucket\{le="([0-9.]+)"\} ([0-9.e+]+)$', text, re.M)}
    out, prev = {}, 0.0
    for k in sorted(cum):
        out[k], prev = int(cum[k] - prev), cum[k]
    return out


def assert_good(client, server, exported, name="img00.jpg"):
    r = post_json(client, server.url, [exported["images"][name]])
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [exported["reference"][name]]


# -- decode_rgb ------------------------------------------------------------------------------------
def test_decode_rgb_truncation_and_pixel_limit(monkeypatch):
    rng = np.random.RandomState(1)
    img = smooth_image(rng, 120, 160)
    for data in (jpeg(img), cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
                 cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes()):
        ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(decode_rgb(data), ref)
        # data after the end-of-image marker (a motion photo's video) is fine
        assert np.array_equal(decode_rgb(data + b"\x00\x00ftypmp42" + bytes(range(256)) * 20), ref)
        for cut in (2, 3, 50, len(data) // 3, len(data) - 700):
            assert decode_rgb(data[:-cut]) is None
            with pytest.raises(DecodeError, match="truncated JPEG") as e:
                decode_rgb(data[:-cut], raise_errors=True)
            assert e.value.kind == "truncated"
    data = jpeg(img)
    # OpenCV 4.x decodes a truncated baseline JPEG into an image (grey below the cut): the check
    # must not depend on cv2 refusing it, so give imdecode that behaviour
    real = cv2.imdecode
    monkeypatch.setattr(pipeline.cv2, "imdecode", lambda buf, flags: np.full((120, 160, 3), 128, np.uint8))
    assert decode_rgb(data[:-100]) is None
    # the pixel limit is checked from the header: cv2 is never asked to decode a bomb
    calls = []
    monkeypatch.setattr(pipeline.cv2, "imdecode", lambda buf, flags: calls.append(1) or real(buf, flags))
    with pytest.raises(DecodeError, match=r"JPEG image of 160x120 = 19200 pixels is over the limit of 19199") as e:
        decode_rgb(data, max_pixels=19199, raise_errors=True)
    assert e.value.kind == "pixels" and not calls
    with pytest.raises(DecodeError, match=r"PNG image of 20000x20000 = 400000000 pixels") as e:
        decode_rgb(png_bomb(), max_pixels=50_000_000, raise_errors=True)
    with pytest.raises(DecodeError, match=r"60000x50000"):
        decode_rgb(jpeg_with_size(data, 60000, 50000), raise_errors=True)  # PIL's default limit
    b = cv2.imencode(".bmp", img)[1].tobytes()  # a format read through PIL's lazy open
    with pytest.raises(DecodeError, match=r"BMP image of 160x120"):
        decode_rgb(b, max_pixels=100, raise_errors=True)
    assert not calls
    assert decode_rgb(data, max_pixels=19200).shape == (120, 160, 3) and calls
    with pytest.raises(DecodeError, match="unrecognised format") as e:
        decode_rgb(b"hello, not an image", raise_errors=True)
    assert e.value.kind == "format"
    with pytest.raises(DecodeError, match="empty"):
        decode_rgb(b"", raise_errors=True)
    assert decode_rgb(np.frombuffer(data, np.uint8)).shape == (120, 160, 3)  # read_rgb's uint8 array


def png_bomb(w=20000, h=20000):
    """A valid 1-bit PNG of w x h black pixels: ~50 KB that would decode to w*h*3 bytes."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    comp = zlib.compressobj(9)
    rows = (b"\x00" + b"\x00" * ((w + 7) // 8)) * 1000
    idat = b"".join(comp.compress(rows) for _ in range(h // 1000)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def jpeg_with_size(data, w, h):
    """The JPEG with its frame header claiming w x h."""
    i = data.find(b"\xff\xc0")
    return data[:i + 5] + struct.pack(">HH", h, w) + data[i + 9:]


# -- the batcher in-process ------------------------------------------------------------------------
class FakeModel:
    def __init__(self, delay=0.0):
        self.delay, self.sizes = delay, []

    def warmup(self, max_batch):
        pass

    def infer(self, batch):
        self.sizes.append(len(batch))
        time.sleep(self.delay)
        return [float(x.ravel()[0]) for x in batch]


def test_batcher_batches_orders_bounds_and_drains():
    from ppcls.serving.batcher import Batcher, NotReady, QueueFull
    model = FakeModel(delay=0.02)
    b = Batcher(lambda: model, max_batch=4, max_wait_ms=30, queue_size=10).start()
    assert b.wait_loaded(30) is model
    with pytest.raises(NotReady, match="warming up"):
        b.reserve(1)
    b.begin()
    assert b.ready.wait(30)

    async def scenario():
        loop = asyncio.get_running_loop()
        b.reserve(3)
        b.reserve(3)
        with pytest.raises(QueueFull, match="6 of 10"):
            b.reserve(5)
        j1 = b.submit([np.full((1,), v, np.float32) for v in (1, 2, 3)], loop)
        j2 = b.submit([np.full((1,), v, np.float32) for v in (4, 5, 6)], loop)
        r1, r2 = await asyncio.gather(j1.future, j2.future)
        assert r1 == [1, 2, 3] and r2 == [4, 5, 6]
        assert model.sizes == [4, 2] and b.pending == 0  # one full batch, then the rest
        # a cancelled request's queued images are dropped unrun; close() drains the others
        model.sizes.clear()
        b.reserve(4)
        j3 = b.submit([np.full((1,), 7.0, np.float32)] * 4, loop)
        b.reserve(4)
        j4 = b.submit([np.full((1,), 8.0, np.float32)] * 4, loop)
        b.cancel(j4)
        assert await j3.future == [7] * 4
        await asyncio.get_running_loop().run_in_executor(None, b.close, 10)
        assert model.sizes == [4] and b.pending == 0 and not j4.future.done()
        with pytest.raises(NotReady, match="shutting down"):
            b.reserve(1)
    asyncio.run(scenario())


# -- the service -----------------------------------------------------------------------------------
def test_answers_equal_predict_cls_under_concurrency(server, exported):
    """400 requests from 16 concurrent connections, JSON and multipart, 1-3 images each: no error,
    every answer equal to predict_cls.py's for its images, and the batcher formed real batches."""
    names = sorted(exported["images"])
    before = batch_sizes(httpx.get(server.url + "/metrics").text)
    local = threading.local()

    def one(i):
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
        chosen = [names[(i * 7 + k) % len(names)] for k in range(1 + i % 3)]
        if i % 2:
            r = post_files(client, server.url, [(n, exported["images"][n]) for n in chosen])
        else:
            r = post_json(client, server.url, [exported["images"][n] for n in chosen])
        return chosen, r.status_code, r.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(400)))
    statuses = [a[1] for a in answers]
    assert statuses.count(200) == 400, {s: statuses.count(s) for s in set(statuses)}
    for chosen, _, body in answers:
        assert body["model"] == "DLA46_c" and body["latency_ms"] > 0
        assert body["results"] == [exported["reference"][n] for n in chosen]
    assert {n for a in answers for n in a[0]} == set(names)
    text = httpx.get(server.url + "/metrics").text
    after = batch_sizes(text)
    formed = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert sum(k * v for k, v in formed.items()) == sum(len(a[0]) for a in answers)
    assert max(k for k, v in formed.items() if v) > 1, formed
    assert metric(text, "ppcls_queue_depth") == 0
    assert metric(text, "ppcls_predict_latency_seconds_count") >= 400
    assert metric(text, "ppcls_http_requests_total", path="/predict", status="200") >= 400


def raw_request(url, data, read=True):
    host, port = url.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        return s.recv(65536) if read else b""


def test_hostile_input_gets_4xx_and_the_next_request_is_served(server, exported):
    img = exported["images"]["img01.jpg"]
    rng = np.random.RandomState(2)
    big = jpeg(cv2.resize((rng.rand(12, 12, 3) * 255).astype(np.uint8), (6000, 6000)), 50)  # 36 MP, < 1 MB
    png = exported["images"]["img03.png"]
    ctype = {"content-type": "application/json"}

    def chunks(total):
        for _ in range(total // 65536):
            yield b"a" * 65536

    cases = [
        ("not an image", dict(json=json_body([b"this is not an image at all"])), 400,
         r"images\[0\]: not a decodable image \(unrecognised format"),
        ("not an image, multipart", dict(files=[("images", ("a.txt", b"hello", "text/plain"))]), 400,
         r"images\[0\]: not a decodable image"),
        ("truncated JPEG", dict(json=json_body([img, img[: len(img) * 2 // 3]])), 400,
         r"images\[1\]: truncated JPEG: the data \(\d+ bytes\) ends before the end-of-image marker"),
        ("truncated PNG", dict(json=json_body([png[: len(png) // 2]])), 400, r"images\[0\]: not a decodable PNG image"),
        ("bad JSON", dict(content=b'{"images": ["abc"', headers=ctype), 400, r"the body is not valid JSON \(JSONDecodeError"),
        ("deeply nested JSON", dict(content=b"[" * 200000, headers=ctype), 400, r"not valid JSON \(RecursionError"),
        ("JSON not utf-8", dict(content=b'{"images": ["\xff\xfe"]}', headers=ctype), 400, r"not valid JSON"),
        ("JSON without images", dict(json={"image": []}), 422, r"no 'images' key"),
        ("images not a list", dict(json={"images": "abc"}), 422, r"'images' must be a non-empty list"),
        ("image not a string", dict(json={"images": [12]}), 422, r"images\[0\]: expected a base64 string, got int"),
        ("bad base64", dict(json={"images": [base64.b64encode(img).decode(), "not*base64!"]}), 400,
         r"images\[1\]: not valid base64"),
        ("empty image", dict(json={"images": [""]}), 400, r"images\[0\]: empty image"),
        ("too many images", dict(json=json_body([img] * 65)), 413, r"65 images, more than the limit of 64"),
        ("decompression bomb PNG", dict(json=json_body([png_bomb()])), 413,
         r"images\[0\]: PNG image of 20000x20000 = 400000000 pixels is over the limit of 30000000"),
        ("JPEG header claiming 60000x60000", dict(json=json_body([jpeg_with_size(img, 60000, 60000)])), 413,
         r"60000x60000 = 3600000000 pixels is over the limit"),
        ("36 MP photo", dict(files=[("images", ("big.jpg", big, "image/jpeg"))]), 413,
         r"images\[0\]: JPEG image of 6000x6000 = 36000000 pixels is over the limit of 30000000 pixels"),
        ("body over the limit", dict(content=b"x" * (5 << 20), headers=ctype), 413,
         r"the body of 5242880 bytes is over the limit of 4194304 bytes"),
        ("chunked body over the limit", dict(content=chunks(6 << 20), headers=ctype), 413,
         r"the body is over the limit of 4194304 bytes"),
        ("wrong content type", dict(content=b"images=abc", headers={"content-type": "text/plain"}), 415,
         r"unsupported Content-Type 'text/plain'"),
        ("no content type", dict(content=b"abc"), 415, r"no Content-Type"),
        ("multipart without files", dict(content=b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
                                         headers={"content-type": "multipart/form-data; boundary=b"}), 422,
         r"holds no files"),
        ("malformed multipart", dict(content=b"garbage", headers={"content-type": "multipart/form-data; boundary=b"}), 400,
         r"malformed multipart body"),
        ("multipart without boundary", dict(content=b"x", headers={"content-type": "multipart/form-data"}), 400,
         r"malformed multipart body"),
    ]
    with httpx.Client(timeout=60) as client:
        for name, kwargs, status, pattern in cases:
            t0 = time.perf_counter()
            r = client.post(server.url + "/predict", **kwargs)
            dt = time.perf_counter() - t0
            assert r.status_code == status, (name, r.status_code, r.text)
            assert r.headers["content-type"] == "application/json", name
            assert "\n" not in r.text and list(r.json()) == ["error"], (name, r.text)
            assert re.search(pattern, r.json()["error"]), (name, r.text)
            if "bomb" in name or "60000" in name:
                assert dt < 5, (name, dt)  # refused from the header, not decoded
            assert_good(client, server, exported)
        # a client that announces a body and leaves halfway, and one that sends garbage
        raw_request(server.url, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                b"Content-Length: 100000\r\n\r\n{\"images\": [", read=False)
        assert raw_request(server.url, b"\x16\x03\x01\x02\x00 not http\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert_good(client, server, exported)
        for path, method, status in (("/nope", "GET", 404), ("/predict", "GET", 405)):
            r = client.request(method, server.url + path)
            assert r.status_code == status and list(r.json()) == ["error"], r.text
        text = client.get(server.url + "/metrics").text
    for kind, at_least in (("format", 2), ("truncated", 1), ("corrupt", 1), ("bad_json", 3), ("bad_base64", 1),
                           ("pixels", 3), ("body_too_large", 2), ("content_type", 2), ("too_many_images", 1)):
        assert metric(text, "ppcls_errors_total", kind=kind) >= at_least, (kind, text)
    assert server.proc.poll() is None


def test_overload_gives_503_and_recovers(exported):
    """A queue of 2 images in front of a batch of 1: a flood from 32 connections gets 503s with
    Retry-After (never anything else), and afterwards every request is served again."""
    s = Server(exported["dir"], "--queue-size", "2", "--max-batch", "1", "--max-wait-ms", "0")
    try:
        img = exported["images"]["img02.jpg"]
        body = json.dumps(json_body([img, img])).encode()
        local = threading.local()

        def one(_):
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=60)
            r = client.post(s.url + "/predict", content=body, headers={"content-type": "application/json"})
            return r.status_code, r.headers.get("retry-after"), r.json()

        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(one, range(320)))
        codes = [a[0] for a in answers]
        assert set(codes) <= {200, 503}, codes
        assert codes.count(503) > 0 and codes.count(200) > 0, codes
        for code, retry, body_ in answers:
            if code == 503:
                assert retry == "1" and re.search(r"the queue is full \(\d of 2 images waiting\)", body_["error"])
            else:
                assert body_["results"] == [exported["reference"]["img02.jpg"]] * 2
        with httpx.Client(timeout=60) as client:
            for _ in range(20):
                assert_good(client, s, exported, "img02.jpg")
            text = client.get(s.url + "/metrics").text
        assert metric(text, "ppcls_errors_total", kind="queue_full") == codes.count(503)
        assert metric(text, "ppcls_queue_depth") == 0
        assert batch_sizes(text) == {1: 2 * codes.count(200) + 20}  # no batch larger than --max-batch 1
    finally:
        assert s.stop() == 0, s.log


@pytest.mark.slow  # ~10 s on the shared 2-core machine (warm-up of 64 batch sizes, 16 photos)
@pytest.mark.timing  # the 504 must come within 4 s
def test_ready_only_after_warmup_and_timeout_gives_504(exported):
    """/health and /predict say 503 until the warm-up (here batch sizes 1..64) is over; a request
    that cannot be answered within --timeout (its 16 photos take longer to decode) gets 504 and the
    next one is served."""
    s = Server(exported["dir"], "--max-batch", "64", "--timeout", "1", "--max-body-mb", "16", wait_ready=False)
    try:
        seen = []
        t0 = time.time()
        while time.time() - t0 < 120:
            try:
                r = httpx.get(s.url + "/health", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.01)
                continue
            seen.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.json() == {"status": "warming up"} and r.headers["retry-after"] == "1"
            p = post_json(httpx, s.url, [exported["images"]["img00.jpg"]])
            if p.status_code != 200:  # the warm-up may end in between
                assert p.status_code == 503 and "warming up" in p.json()["error"]
        assert seen[0] == 503 and seen[-1] == 200, seen
        assert s.log.index("warm-up done") > s.log.index("Application startup complete")
        rng = np.random.RandomState(3)
        huge = [jpeg(cv2.resize((rng.rand(16, 24, 3) * 255).astype(np.uint8), (6000, 4000)), 50)] * 16
        # 16 x 24 MP: ~1.6 s of decoding on 2 workers
        with httpx.Client(timeout=60) as client:
            t = time.perf_counter()
            r = post_files(client, s.url, [(f"{i}.jpg", d) for i, d in enumerate(huge)])
            assert r.status_code == 504, r.text
            assert r.json() == {"error": "no answer within the request timeout of 1 s"}
            assert time.perf_counter() - t < 4
            # its images not yet being decoded were dropped; the two in the decoders finish first
            assert_good(client, s, exported)
            assert metric(client.get(s.url + "/metrics").text, "ppcls_errors_total", kind="timeout") == 1
    finally:
        assert s.stop() == 0, s.log


def test_sigterm_during_load_answers_every_accepted_request(exported):
    """SIGTERM while 16 connections keep requests in flight: every request the server accepted is
    answered 200 (the others fail to connect), the queue is drained and the process exits 0."""
    s = Server(exported["dir"], "--max-wait-ms", "40")
    names = sorted(exported["images"])
    outcomes = []  # (status or error name, time answered)
    signalled = []

    async def load():
        async with httpx.AsyncClient(timeout=60) as client:
            async def worker(w):
                for i in range(10_000):
                    n = names[(w + i) % len(names)]
                    try:
                        r = await client.post(s.url + "/predict", json=json_body([exported["images"][n]]))
                        outcomes.append((r.status_code, time.monotonic()))
                        assert r.status_code != 200 or r.json()["results"] == [exported["reference"][n]]
                    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as e:
                        outcomes.append((type(e).__name__, time.monotonic()))
                        return

            async def killer():
                while sum(1 for o in outcomes if o[0] == 200) < 150:
                    await asyncio.sleep(0.01)
                signalled.append(time.monotonic())
                s.proc.send_signal(signal.SIGTERM)
            await asyncio.gather(killer(), *[worker(w) for w in range(16)])

    try:
        asyncio.run(asyncio.wait_for(load(), 120))
        rc = s.proc.wait(60)
    finally:
        if s.proc.poll() is None:
            s.proc.kill()
    codes = [o[0] for o in outcomes]
    ok = codes.count(200)
    assert all(c == 200 or isinstance(c, str) for c in codes), set(codes)
    m = re.search(r"shutdown: (\d+) /predict requests accepted, (\d+) answered \(200: (\d+)\)", s.log)
    assert m, s.log
    assert int(m.group(1)) == int(m.group(2)) == int(m.group(3)) == ok, (m.group(0), ok)
    assert sum(1 for c, t in outcomes if c == 200 and t > signalled[0]) > 0  # in flight at SIGTERM, then answered
    assert rc == 0, s.log


def test_startup_errors_are_one_line(exported, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, SERVER, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    r = run("--model-dir", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == \
        [f"error: --model-dir {tmp_path / 'missing'}: not found (export a model with tools/export_model.py)"]
    (tmp_path / "empty").mkdir()
    r = run("--model-dir", str(tmp_path / "empty"), "--port", "0")
    assert r.returncode == 2 and "holds no inference.json/.pdmodel" in r.stderr and "Traceback" not in r.stderr
    r = run("--model-dir", exported["dir"], "--max-batch", "0")
    assert r.returncode == 2 and "error: --max-batch: out of range (0)" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = run("--model-dir", exported["dir"], "--port", str(busy.getsockname()[1]))
    assert r.returncode == 2 and "cannot listen there" in r.stderr and "Traceback" not in r.stderr
