"""A loopback HTTP server for the tests that download (they never touch the internet)."""
import http.server
import re
import threading
import time


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``files`` with Range support.

    ``script[path]`` is a list of actions, one consumed per request to that path: "cut" (announce the
    full length, send half, close), "404", "500", "slow" (answer after ``delay`` s), "redirect:URL".
    ``ranges = False`` makes it ignore Range headers (answer 200). ``requests`` holds (path, headers)."""

    def __init__(self):
        self.files, self.script, self.requests = {}, {}, []
        self.ranges, self.delay = True, 1.0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.handle_error = lambda request, address: None  # a client that gave up is no news
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def count(self, path=None):
        return sum(1 for p, _ in self.requests if path is None or p == path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                actions = server.script.get(self.path) or [None]
                action = actions.pop(0) if actions[0] is not None else None
                if action == "404":
                    return self.send_error(404)
                if action == "500":
                    return self.send_error(500)
                if action == "slow":
                    time.sleep(server.delay)
                if action and action.startswith("redirect:"):
                    self.send_response(302)
                    self.send_header("Location", action[len("redirect:"):])
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                data = server.files.get(self.path.split("?")[0])
                if data is None:
                    return self.send_error(404)
                self.send_body(data, cut=action == "cut")

            def send_body(self, data, cut):
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                start = int(m.group(1)) if m and server.ranges else 0
                if start >= len(data) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if cut else body)
                self.wfile.flush()
                self.close_connection = True

        return Handler
