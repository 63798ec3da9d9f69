"""ppcls.utils.download against a loopback HTTP server started by the tests (never the internet)."""
import hashlib
import io
import logging
import os
import socket
import threading
import time

import pytest

from http_server import Server
from ppcls.utils import download
from ppcls.utils.errors import ConfigError

DATA = bytes(range(256)) * 1200 + b"tail"  # ~300 KiB: several network chunks, odd length
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def env(download_env):
    return download_env


@pytest.fixture
def server():
    s = Server()
    s.files["/w/r50.pth"] = DATA
    yield s
    s.close()


def dest_of(name="r50.pth"):
    return os.path.join(download.cache_dir(), name)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def leftovers(dest):
    return [p for p in (dest, dest + ".part") if os.path.exists(p)]


def one_line_error(fn, *args, **kwargs):
    with pytest.raises(ConfigError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_download_verifies_sha256(server):
    dest = dest_of()
    assert download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA) == dest
    assert read(dest) == DATA and download.sha256_of(dest) == SHA
    assert not os.path.exists(dest + ".part")
    assert not os.path.exists(dest + ".sha256")  # the full hash is known: nothing to record
    assert server.count() == 1 and "Range" not in server.requests[0][1]


def test_second_fetch_uses_the_cache_without_a_request(server):
    dest = dest_of()
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    download.fetch(server.url + "/w/r50.pth", dest)
    assert server.count() == 1


def test_cut_transfer_is_retried_with_a_range_request(server):
    server.script["/w/r50.pth"] = ["cut"]
    dest = dest_of()
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    assert read(dest) == DATA
    assert server.count() == 2 and server.requests[1][1]["Range"] == f"bytes={len(DATA) // 2}-"


def test_part_left_by_an_interrupted_run_is_resumed(server, env):
    server.script["/w/r50.pth"] = ["cut"]
    dest = dest_of()
    env.setenv("PPCLS_DOWNLOAD_RETRIES", "1")
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest, sha256=SHA)
    assert server.url + "/w/r50.pth" in msg and f"got {len(DATA) // 2} of {len(DATA)} bytes" in msg
    assert leftovers(dest) == [dest + ".part"] and os.path.getsize(dest + ".part") == len(DATA) // 2
    env.delenv("PPCLS_DOWNLOAD_RETRIES")
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    assert read(dest) == DATA and leftovers(dest) == [dest]
    assert server.requests[-1][1]["Range"] == f"bytes={len(DATA) // 2}-"


def test_a_200_answer_to_a_range_request_restarts_from_zero(server):
    server.ranges = False
    dest = dest_of()
    os.makedirs(os.path.dirname(dest))
    write(dest + ".part", b"x" * 1000)
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    assert read(dest) == DATA
    assert server.count() == 1 and server.requests[0][1]["Range"] == "bytes=1000-"


def test_a_416_answer_restarts_unless_the_part_is_complete(server):
    dest = dest_of()
    os.makedirs(os.path.dirname(dest))
    write(dest + ".part", b"x" * (len(DATA) + 10))  # longer than the file: useless
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    assert read(dest) == DATA
    assert server.count() == 2 and "Range" not in server.requests[1][1]
    # a complete .part (interrupted just before the rename) is verified and kept, not fetched again
    os.replace(dest, dest + ".part")
    download.fetch(server.url + "/w/r50.pth", dest, sha256=SHA)
    assert read(dest) == DATA and server.count() == 3


def test_sha256_mismatch_fails_names_both_hashes_and_leaves_no_file(server):
    dest, wrong = dest_of(), "0" * 64
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest, sha256=wrong)
    assert server.url + "/w/r50.pth" in msg and wrong in msg and SHA in msg
    assert leftovers(dest) == []


def test_sha256_prefix(server):
    dest = dest_of()
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest, sha256_prefix="deadbeef")
    assert server.url + "/w/r50.pth" in msg and "deadbeef" in msg and SHA in msg
    assert leftovers(dest) == []
    download.fetch(server.url + "/w/r50.pth", dest, sha256_prefix=SHA[:8].upper())
    assert read(dest) == DATA
    # 8 hex digits are easy to forge: the full hash is recorded and checked as well
    assert download.recorded_sha256(dest) == SHA


def test_trust_on_first_use_records_the_hash_and_detects_tampering(server):
    dest = dest_of()
    download.fetch(server.url + "/w/r50.pth", dest)
    assert read(dest + ".sha256").decode() == f"{SHA}  r50.pth\n"
    download.fetch(server.url + "/w/r50.pth", dest)
    assert download.verify_recorded(dest) == SHA
    with open(dest, "r+b") as f:
        f.write(b"evil")
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest)
    changed = download.sha256_of(dest)
    assert dest in msg and SHA in msg and changed in msg
    one_line_error(download.verify_recorded, dest)
    assert server.count() == 1
    # the weights deleted, the record kept: the URL must still serve the bytes first seen
    os.remove(dest)
    server.files["/w/r50.pth"] = b"other bytes"
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest)
    assert SHA in msg and hashlib.sha256(b"other bytes").hexdigest() in msg and leftovers(dest) == []


def test_404_is_one_line_with_the_url_and_not_retried(server):
    dest = dest_of("missing.pth")
    msg = one_line_error(download.fetch, server.url + "/missing.pth", dest)
    assert msg == f"could not download {server.url}/missing.pth: HTTP 404 Not Found"
    assert server.count() == 1 and leftovers(dest) == []
    msg = one_line_error(download.fetch, server.url + "/missing.pth", dest, what="DLA34 weights")
    assert msg == f"could not download DLA34 weights from {server.url}/missing.pth: HTTP 404 Not Found"


def test_500_then_200_succeeds_after_a_retry(server):
    server.script["/w/r50.pth"] = ["500"]
    download.fetch(server.url + "/w/r50.pth", dest_of(), sha256=SHA)
    assert server.count() == 2 and read(dest_of()) == DATA


def test_500_every_time_gives_up_after_the_retries(server, env):
    env.setenv("PPCLS_DOWNLOAD_RETRIES", "3")
    server.script["/w/r50.pth"] = ["500"] * 5
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest_of())
    assert msg.endswith("HTTP 500 Internal Server Error after 3 attempts") and server.count() == 3


def test_refused_connection_is_one_line_with_the_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed at once: nothing listens there
    url = f"http://127.0.0.1:{port}/x.pth"
    msg = one_line_error(download.fetch, url, dest_of("x.pth"))
    assert msg == f"could not download {url}: connection refused after 4 attempts"


def test_timeout(server, env):
    env.setenv("PPCLS_DOWNLOAD_TIMEOUT", "0.3")
    env.setenv("PPCLS_DOWNLOAD_RETRIES", "2")
    server.script["/w/r50.pth"] = ["slow", "slow"]
    t = time.monotonic()
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", dest_of())
    assert time.monotonic() - t < 0.9 * 2 * server.delay
    assert server.url + "/w/r50.pth" in msg and msg.endswith("timed out after 0.3 s (2 attempts)")
    assert server.count() == 2 and leftovers(dest_of()) == []


def test_offline_uses_the_cache_and_names_the_path_of_a_missing_file(server, env):
    dest = dest_of()
    download.fetch(server.url + "/w/r50.pth", dest)
    env.setenv("PPCLS_OFFLINE", "1")
    assert download.fetch(server.url + "/w/r50.pth", dest) == dest
    missing = dest_of("other.pth")
    msg = one_line_error(download.fetch, server.url + "/w/other.pth", missing)
    assert server.url + "/w/other.pth" in msg and os.path.abspath(missing) in msg
    assert server.count() == 1
    # a file put there by hand is used, and its hash recorded at that first use
    with open(missing, "wb") as f:
        f.write(b"by hand")
    assert download.fetch(server.url + "/w/other.pth", missing) == missing
    assert download.recorded_sha256(missing) == hashlib.sha256(b"by hand").hexdigest()
    assert server.count() == 1


def test_mirror_replaces_scheme_and_host_and_keeps_path_and_query(server, env):
    env.setenv("PPCLS_WEIGHTS_MIRROR", server.url + "/")
    source = "https://weights.invalid/w/r50.pth?raw=1"
    assert download.mirror_url(source) == server.url + "/w/r50.pth?raw=1"
    download.fetch(source, dest_of(), sha256=SHA)
    assert [p for p, _ in server.requests] == ["/w/r50.pth?raw=1"]
    msg = one_line_error(download.fetch, "https://weights.invalid/w/gone.pth", dest_of("gone.pth"))
    assert f"{server.url}/w/gone.pth (mirror of https://weights.invalid/w/gone.pth)" in msg
    env.setenv("PPCLS_WEIGHTS_MIRROR", "ftp://mirror")
    assert "PPCLS_WEIGHTS_MIRROR" in one_line_error(download.fetch, source, dest_of("new.pth"))


def test_ppcls_home_moves_the_cache(tmp_path, env):
    env.setenv("PPCLS_HOME", str(tmp_path / "elsewhere"))
    assert download.cache_dir() == str(tmp_path / "elsewhere" / "weights")
    env.delenv("PPCLS_HOME")
    env.setenv("HOME", str(tmp_path / "user"))
    assert download.cache_dir() == str(tmp_path / "user" / ".cache" / "ppcls" / "weights")


def test_only_http_and_https(server, tmp_path):
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x.pth", "r50.pth"):
        msg = one_line_error(download.fetch, url, str(tmp_path / "x.pth"))
        assert url in msg and "http" in msg
    server.script["/w/r50.pth"] = ["redirect:ftp://127.0.0.1/x.pth"]
    msg = one_line_error(download.fetch, server.url + "/w/r50.pth", str(tmp_path / "x.pth"))
    assert "redirected to ftp://127.0.0.1/x.pth" in msg
    server.script["/w/r50.pth"] = [f"redirect:{server.url}/w/r50.pth"]  # an http redirect is followed
    download.fetch(server.url + "/w/r50.pth", str(tmp_path / "x.pth"), sha256=SHA)
    assert server.count() == 3


def test_bad_settings_are_one_line(server, env):
    env.setenv("PPCLS_DOWNLOAD_RETRIES", "0")
    assert "PPCLS_DOWNLOAD_RETRIES" in one_line_error(download.fetch, server.url + "/w/r50.pth", dest_of())
    env.delenv("PPCLS_DOWNLOAD_RETRIES")
    assert "sha256" in one_line_error(download.fetch, server.url + "/w/r50.pth", dest_of(), sha256="abc")
    assert server.count() == 0


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_progress_is_two_log_lines_without_a_terminal_and_a_bar_on_one(server, monkeypatch):
    records = Records()
    download.logger.addHandler(records)
    try:
        server.script["/w/r50.pth"] = ["cut"]
        download.fetch(server.url + "/w/r50.pth", dest_of(), what="ResNet50 weights")
        assert len(records.lines) == 2
        assert records.lines[0] == f"downloading ResNet50 weights from {server.url}/w/r50.pth"
        assert records.lines[1].startswith(f"downloaded ResNet50 weights to {dest_of()}")
        assert "2 attempts" in records.lines[1]
    finally:
        download.logger.removeHandler(records)
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    download.fetch(server.url + "/w/r50.pth", dest_of("bar.pth"))
    assert "B/s" in download.sys.stderr.getvalue()


def test_concurrent_fetches_of_one_file_download_it_once(server):
    server.delay = 0.3
    server.script["/w/r50.pth"] = ["slow"]
    results, errors = [], []

    def one():
        try:
            results.append(download.fetch(server.url + "/w/r50.pth", dest_of(), sha256=SHA))
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [dest_of()] * 3 and server.count() == 1
