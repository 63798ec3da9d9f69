"""The weights download cache: ``fetch(url, dest)`` downloads once, verifies, and reuses the file.

- ``cache_dir()`` is ``$PPCLS_HOME/weights``, else ``~/.cache/ppcls/weights``; callers pick ``dest``
  inside it.
- A download goes to ``dest + ".part"`` and is renamed to ``dest`` only once complete and verified, so
  ``dest`` is never half-written. A ``.part`` left by an interrupted run is resumed with a Range request.
- Verification: a known ``sha256`` must match exactly, a ``sha256_prefix`` (the 8 hex digits of a
  torch-hub style file name) must start the hash. Unless the full hash is known, the hash seen at the
  first download is recorded in ``dest + ".sha256"`` (``sha256sum -c`` format) and checked on every later
  use: trust on first use.
- Transient failures (refused / reset connections, timeouts, HTTP 5xx, 408, 429, a short body) are
  retried with exponential back-off; other 4xx answers are not.
- Every failure is one line (``ConfigError``); a full disk is a ``RunError``.

Environment:
    PPCLS_HOME               the cache root (``weights/`` below it)
    PPCLS_WEIGHTS_MIRROR     ``http(s)://host[:port][/prefix]``: replaces each URL's scheme and host,
                             keeps its path and query (as HF_ENDPOINT does for the Hugging Face Hub)
    PPCLS_OFFLINE=1          no network access: cached files only
    PPCLS_DOWNLOAD_RETRIES   attempts per download (default 4)
    PPCLS_DOWNLOAD_BACKOFF   first back-off in seconds, doubled after each failure (default 0.5)
    PPCLS_DOWNLOAD_TIMEOUT   seconds without an answer or data before a request fails (default 30)
The usual ``http_proxy`` / ``https_proxy`` / ``no_proxy`` variables are honoured.
"""
import contextlib
import errno
import hashlib
import http.client
import math
import os
import re
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from .errors import ConfigError, RunError
from .logger import logger

HASH_CHUNK = 1 << 20
NET_CHUNK = 1 << 16
DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5
DEFAULT_TIMEOUT = 30.0
SCHEMES = ("http", "https")
RECORD_SUFFIX = ".sha256"
PART_SUFFIX = ".part"
_HEX = re.compile(r"[0-9a-f]+")
_RANGE_ANSWER = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


# ----------------------------------------------------------------------------------------- settings
def cache_dir():
    """``$PPCLS_HOME/weights`` when PPCLS_HOME is set, else ``~/.cache/ppcls/weights``."""
    home = os.environ.get("PPCLS_HOME")
    root = os.path.expanduser(home) if home else os.path.join(os.path.expanduser("~"), ".cache", "ppcls")
    return os.path.join(root, "weights")


def is_offline():
    """True when PPCLS_OFFLINE asks for no network access."""
    return os.environ.get("PPCLS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def _env_number(name, default, kind, minimum, inclusive=True):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    too_small = value is not None and (value < minimum or (value == minimum and not inclusive))
    if value is None or not math.isfinite(value) or too_small:
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ConfigError(f"{name}={raw!r}: expected {'an integer' if kind is int else 'a number'} {bound}")
    return value


def _settings():
    return (_env_number("PPCLS_DOWNLOAD_RETRIES", DEFAULT_RETRIES, int, 1),
            _env_number("PPCLS_DOWNLOAD_BACKOFF", DEFAULT_BACKOFF, float, 0.0),
            _env_number("PPCLS_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT, float, 0.0, inclusive=False))


# --------------------------------------------------------------------------------------------- URLs
def _check_url(url):
    url = str(url).strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in SCHEMES or not parts.netloc:
        raise ConfigError(f"cannot download {url}: only http:// and https:// URLs are supported")
    return url


def mirror_url(url):
    """``url`` with its scheme and host replaced by PPCLS_WEIGHTS_MIRROR's (path and query kept);
    ``url`` itself when no mirror is set. A path in the mirror is put in front of the URL's path."""
    mirror = os.environ.get("PPCLS_WEIGHTS_MIRROR", "").strip()
    if not mirror:
        return url
    m = urllib.parse.urlsplit(_check_mirror(mirror))
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def _check_mirror(mirror):
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme.lower() not in SCHEMES or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"PPCLS_WEIGHTS_MIRROR={mirror!r}: expected http(s)://host[:port][/prefix]")
    return mirror


def _describe(url, source):
    return url if url == source else f"{url} (mirror of {source})"


# ----------------------------------------------------------------------------------------- hashing
def sha256_of(path):
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
                digest.update(chunk)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    return digest.hexdigest()


def _expected_hashes(sha256, sha256_prefix):
    def hex_digits(value, name, exact):
        if value is None:
            return None
        value = str(value).strip().lower()
        if not _HEX.fullmatch(value) or len(value) > 64 or (exact and len(value) != 64):
            raise ConfigError(f"{name}={value!r}: expected {'64' if exact else 'up to 64'} hex digits")
        return value
    return hex_digits(sha256, "sha256", True), hex_digits(sha256_prefix, "sha256_prefix", False)


def _hash_problem(actual, sha256, sha256_prefix):
    """Why ``actual`` is not the expected hash, or None when it is."""
    if sha256 and actual != sha256:
        return f"expected sha256 {sha256}, got {actual}"
    if sha256_prefix and not actual.startswith(sha256_prefix):
        return f"expected a sha256 starting with {sha256_prefix}, got {actual}"
    return None


def record_path(path):
    """Where the trust-on-first-use hash of ``path`` is kept."""
    return os.fspath(path) + RECORD_SUFFIX


def recorded_sha256(path):
    """The hash recorded for ``path`` (see ``record_sha256``), or None when none is recorded."""
    record = record_path(path)
    try:
        with open(record, encoding="utf-8") as f:
            text = f.read(200)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"cannot read {record}: {e.strerror or e}") from None
    digest = (text.split() or [""])[0].lower()
    if len(digest) != 64 or not _HEX.fullmatch(digest):
        raise ConfigError(f"{record} is not a sha256 record (64 hex digits); "
                          f"delete it to record the hash again")
    return digest


def record_sha256(path, digest=None):
    """Record the sha256 of ``path`` in ``path + ".sha256"`` (``sha256sum -c`` format); returns it."""
    digest = digest or sha256_of(path)
    record = record_path(path)
    tmp = f"{record}.{os.getpid()}.tmp"  # own name per process: two ranks may record at once
    with _local_io(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{digest}  {os.path.basename(os.fspath(path))}\n")
        os.replace(tmp, record)
    return digest


def verify_recorded(path, digest=None):
    """Check the file at ``path`` against the hash recorded beside it, recording it when there is none
    (trust on first use). Returns the file's sha256; a changed file is a ConfigError naming both
    hashes and the path. ``digest``: the file's hash when the caller has just computed it."""
    actual = digest or sha256_of(path)
    recorded = recorded_sha256(path)
    if recorded is None:
        _try_record(path, actual)
    elif recorded != actual:
        raise ConfigError(f"{path} has changed since its hash was recorded: sha256 {actual}, recorded "
                          f"{recorded} in {record_path(path)}; delete both files to download it again")
    return actual


def _try_record(path, digest):
    # a read-only shared cache still serves its files; it only loses the later tamper check
    try:
        record_sha256(path, digest)
    except (ConfigError, RunError) as e:
        logger.warning(f"could not record the sha256 of {path} ({e}); it will not be checked later")


# ----------------------------------------------------------------------------------------- fetching
def fetch(url, dest, sha256=None, sha256_prefix=None, what=None):
    """Download ``url`` to the file ``dest`` unless it is cached, verify it, and return ``dest``.

    ``sha256``: the full expected hex hash; ``sha256_prefix``: its first hex digits. Without the full
    hash, the hash seen at the first download is recorded and checked on every later use.
    ``what``: a name for the log lines and messages (e.g. "ResNet50 ImageNet weights")."""
    source = _check_url(url)
    dest = os.fspath(dest)
    sha256, sha256_prefix = _expected_hashes(sha256, sha256_prefix)
    if os.path.isdir(dest):
        raise ConfigError(f"{dest} is a directory, not a weights file (for {source})")
    if os.path.isfile(dest):
        return _verified_cached(dest, source, sha256, sha256_prefix)
    url = _check_url(mirror_url(source))
    label = _describe(url, source)
    if is_offline():
        raise ConfigError(f"PPCLS_OFFLINE is set and {label} is not in the cache: put the file at "
                          f"{os.path.abspath(dest)} or unset PPCLS_OFFLINE")
    _make_parent(dest)
    with _exclusive(dest, label):
        if os.path.isfile(dest):  # another process finished it while we waited for the lock
            return _verified_cached(dest, source, sha256, sha256_prefix)
        part = dest + PART_SUFFIX
        _download(url, part, dest, label, what)
        _verify_download(part, dest, label, sha256, sha256_prefix)
        with _local_io(dest):
            os.replace(part, dest)
    return dest


def _verified_cached(dest, source, sha256, sha256_prefix):
    actual = sha256_of(dest)
    problem = _hash_problem(actual, sha256, sha256_prefix)
    if problem:
        # not deleted: the file may have been put there by hand (offline use)
        raise ConfigError(f"{dest} does not match {source}: {problem}; delete it to download it again")
    if not sha256:
        verify_recorded(dest, actual)
    return dest


def _verify_download(part, dest, label, sha256, sha256_prefix):
    actual = sha256_of(part)
    problem = _hash_problem(actual, sha256, sha256_prefix)
    hint = ""
    if not problem and not sha256:
        # a record without its file: the file was deleted, and the URL must still give the same bytes
        recorded = recorded_sha256(dest)
        if recorded and recorded != actual:
            problem = f"expected sha256 {recorded} (recorded at the first download), got {actual}"
            hint = f" (delete {record_path(dest)} to accept the new file)"
    if problem:
        _remove(part)
        raise ConfigError(f"sha256 mismatch for {label}: {problem}; the download was deleted{hint}")
    if not sha256:
        record_sha256(dest, actual)


def _download(url, part, dest, label, what):
    retries, backoff, timeout = _settings()
    failed = f"could not download {what} from {label}" if what else f"could not download {label}"
    what = what or os.path.basename(dest)
    opener = urllib.request.build_opener(_HttpRedirectsOnly)
    resumed_from, start = _size(part), time.monotonic()
    logger.info(f"downloading {what} from {label}")
    for attempt in range(1, retries + 1):
        try:
            _transfer(opener, url, part, timeout, what)
            break
        except _Permanent as e:
            raise ConfigError(f"{failed}: {e}") from None
        except _Transient as e:
            if attempt == retries:
                raise ConfigError(f"{failed}: {_gave_up(e, attempt, part)}") from None
            time.sleep(backoff * 2 ** (attempt - 1))
    notes = [_human(_size(part)), f"{time.monotonic() - start:.1f} s"]
    if resumed_from:
        notes.append(f"resumed at {_human(resumed_from)}")
    if attempt > 1:
        notes.append(f"{attempt} attempts")
    logger.info(f"downloaded {what} to {dest} ({', '.join(notes)})")


def _gave_up(failure, attempts, part):
    text = str(failure)
    if attempts > 1:
        text += f" ({attempts} attempts)" if " after " in text else f" after {attempts} attempts"
    if _size(part):
        text += f"; the {_human(_size(part))} received are kept in {part} and resumed next time"
    return text


class _Transient(Exception):
    """A failure worth retrying."""


class _Permanent(Exception):
    """A failure that another attempt would repeat."""


class _HttpRedirectsOnly(urllib.request.HTTPRedirectHandler):
    # urllib would follow a redirect to ftp://; a download that starts as http(s) stays http(s)
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in SCHEMES:
            fp.close()
            raise _Permanent(f"redirected to {newurl}, which is not an http(s) URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _transfer(opener, url, part, timeout, what):
    """One request: append to (206) or rewrite (200) ``part``; raises _Transient / _Permanent."""
    offset = _size(part)
    request = urllib.request.Request(url, headers={"User-Agent": "ppcls", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            if _unsatisfied_total(e.headers) == offset:
                return  # the .part is already complete: interrupted just before the rename
            _remove(part)  # larger than the file, or the file changed: start again
            return _transfer(opener, url, part, timeout, what)
        raise _http_failure(e) from None
    except (OSError, http.client.HTTPException) as e:
        raise _network_failure(e, timeout) from None
    with response:
        start, total = _body_plan(response, offset, part)
        _copy(response, part, start, total, timeout, what)
    if total is not None and _size(part) != total:
        raise _Transient(f"incomplete download (got {_size(part)} of {total} bytes)")


def _body_plan(response, offset, part):
    """(byte at which the body starts, expected final size or None)."""
    length = _int_or_none(response.headers.get("Content-Length"))
    if response.status != 206:
        return 0, length  # a 200 to a Range request: the server sends everything again
    m = _RANGE_ANSWER.fullmatch((response.headers.get("Content-Range") or "").strip())
    if not m or int(m.group(1)) != offset:
        _remove(part)
        raise _Transient(f"the server answered Range: bytes={offset}- with "
                         f"Content-Range: {response.headers.get('Content-Range')}")
    if m.group(3) != "*":
        return offset, int(m.group(3))
    return offset, int(m.group(2)) + 1


def _copy(response, part, start, total, timeout, what):
    bar = _progress_bar(total, start, what)
    try:
        with _local_io(part):
            with open(part, "ab" if start else "wb") as f:
                while True:
                    try:
                        chunk = response.read(NET_CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _network_failure(e, timeout) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())  # the rename must not outlive the data after a power cut
    finally:
        if bar is not None:
            bar.close()


def _http_failure(e):
    text = f"HTTP {e.code} {e.reason or ''}".strip()
    return _Transient(text) if e.code >= 500 or e.code in (408, 429) else _Permanent(text)


def _network_failure(e, timeout):
    if isinstance(e, urllib.error.URLError):
        if not isinstance(e.reason, BaseException):
            return _Permanent(str(e.reason))  # e.g. "unknown url type"
        e = e.reason
    if isinstance(e, ssl.SSLCertVerificationError):
        return _Permanent(f"TLS certificate verification failed ({e.verify_message})")
    if isinstance(e, socket.gaierror):
        if e.errno == socket.EAI_AGAIN:
            return _Transient("temporary failure resolving the host name")
        return _Permanent(f"cannot resolve the host name ({e.strerror})")
    if isinstance(e, TimeoutError):
        return _Transient(f"timed out after {timeout:g} s")
    if isinstance(e, ConnectionRefusedError):
        return _Transient("connection refused")
    if isinstance(e, http.client.RemoteDisconnected):
        return _Transient("the server closed the connection without answering")
    if isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return _Transient("connection reset")
    if isinstance(e, http.client.IncompleteRead):
        return _Transient("incomplete download")
    if isinstance(e, http.client.HTTPException):
        return _Transient(f"invalid HTTP answer ({type(e).__name__}: {e})")
    return _Transient(e.strerror or str(e))


def _unsatisfied_total(headers):
    m = _UNSATISFIED_RANGE.fullmatch((headers.get("Content-Range") or "").strip()) if headers else None
    return int(m.group(1)) if m else None


def _progress_bar(total, initial, what):
    try:
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm
    except (ImportError, AttributeError, ValueError):  # no tqdm, or no usable stderr
        return None
    return tqdm(total=total, initial=initial, desc=what, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, leave=False, dynamic_ncols=True)


# ------------------------------------------------------------------------------------- local files
@contextlib.contextmanager
def _local_io(path):
    """Turn an OSError on a local file into one line: a full disk is a RunError, the rest ConfigError."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise RunError(f"cannot write {path}: {e.strerror}") from None
        raise ConfigError(f"cannot write {path}: {e.strerror or e}") from None


def _make_parent(dest):
    parent = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the cache folder {parent}: {e.strerror or e} "
                          f"(set PPCLS_HOME to a writable folder)") from None


@contextlib.contextmanager
def _exclusive(dest, label):
    """Hold ``dest + ".lock"``: every rank of a distributed run may fetch the same file at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; concurrent downloads of one file are then the caller's care
        yield
        return
    with _local_io(dest + ".lock"):
        lock = open(dest + ".lock", "a")
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info(f"waiting for another process downloading {label}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
