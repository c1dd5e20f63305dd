"""A small real HTTP server on 127.0.0.1 for tests: serves files, honours Range, and misbehaves on request.

    with FileServer() as server:
        server.add("/model.pth", data, drop_after=1000)  # first GET is cut off after 1000 bytes
        server.add_dir(shared_path("labels"))             # every file of a folder under its name
        url = server.url("/model.pth")
        ...
        assert server.requests[1].range == "bytes=1000-"

Behaviours (per file): `status` (e.g. 404 for every request), `fail_times` + `fail_status` (the first N
requests get e.g. 503), `drop_after` + `drop_times` (the first N GETs close the connection after that
many body bytes; with `reset=True` by a TCP reset), `stall_s` (the first `stall_times` requests wait that long before answering),
`throttle_s` (sleep between 64 KiB chunks, to make a download slow enough to overlap with another),
`honour_range=False` (answer 200 with the whole file to Range requests), `etag` (sent with every file;
a Range request whose `If-Range` differs gets the whole file, as HTTP says). Unknown paths get 404.
Other engineers may reuse it; it has no dependency beyond the standard library.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_CHUNK = 64 * 1024


@dataclass
class Route:
    """What the server does for one path (mutable on purpose: tests change it between requests)."""

    body: bytes
    status: int = 200
    fail_status: int = 503
    fail_times: int = 0
    drop_after: int | None = None
    drop_times: int = 1
    reset: bool = False  # drop with a TCP reset (RST) instead of a clean close
    stall_s: float = 0.0
    stall_times: int = 1
    throttle_s: float = 0.0
    honour_range: bool = True
    etag: str | None = None  # sent as ETag and compared with If-Range; default: derived from the body
    requests: int = 0  # GETs seen so far

    def __post_init__(self):
        if self.etag is None:
            self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass(frozen=True)
class SeenRequest:
    """One request the server received."""

    method: str
    path: str
    range: str | None
    status: int
    if_range: str | None = None


class FileServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (a free port); use as a context manager."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()  # wakes stalled handlers when the server stops
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def add(self, path: str, body: bytes, **behaviour) -> Route:
        """Serve `body` at `path` with the given `Route` behaviour; returns the route (to change it later)."""
        route = Route(body=body, **behaviour)
        self.routes["/" + path.lstrip("/")] = route
        return route

    def add_dir(self, directory: Path, prefix: str = "/") -> None:
        """Serve every file of `directory` (not recursive) under `prefix + name`."""
        for file in sorted(Path(directory).iterdir()):
            if file.is_file():
                self.add(prefix.rstrip("/") + "/" + file.name, file.read_bytes())

    def gets(self, path: str) -> list[SeenRequest]:
        """The GET requests seen for `path`, in order."""
        path = "/" + path.lstrip("/")
        return [r for r in self.requests if r.method == "GET" and r.path == path]

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(send_body=False)

            def do_GET(self):
                self._serve(send_body=True)

            def _serve(self, send_body: bool):
                route = server.routes.get(self.path.split("?")[0])
                range_header = self.headers.get("Range")
                with server._lock:
                    nth = route.requests if route else 0
                    if route and send_body:
                        route.requests += 1
                status = 404 if route is None else route.status
                if route is not None and status == 200 and nth < route.fail_times:
                    status = route.fail_status
                if route is not None and route.stall_s and nth < route.stall_times:
                    server._stop.wait(route.stall_s)
                if status != 200:
                    self._record(range_header, status)
                    self._send_plain(status)
                    return
                body, start = route.body, 0
                if_range = self.headers.get("If-Range")
                if range_header and route.honour_range and if_range in (None, route.etag):
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self._record(range_header, 416)
                        self._send_plain(416, {"Content-Range": f"bytes */{len(body)}"})
                        return
                    self._record(range_header, 206)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self._record(range_header, 200)
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", route.etag)
                self.end_headers()
                if send_body:
                    drop = route.drop_after if nth < route.drop_times else None
                    self._send_body(body[start:], drop, route.throttle_s, route.reset)

            def _send_body(self, data: bytes, drop_after: int | None, throttle_s: float, reset: bool):
                sent = 0
                limit = len(data) if drop_after is None else min(drop_after, len(data))
                try:
                    while sent < limit:
                        piece = data[sent : min(sent + _CHUNK, limit)]
                        self.wfile.write(piece)
                        sent += len(piece)
                        if throttle_s:
                            server._stop.wait(throttle_s)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if drop_after is not None and reset:  # linger 0: close() sends RST, the client sees ECONNRESET
                    server._stop.wait(0.2)  # let the client read what was sent (a reset may discard unread bytes)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                elif drop_after is not None:
                    self.close_connection = True  # the client sees a short body, then EOF

            def _send_plain(self, status: int, headers: dict | None = None):
                body = f"{status}\n".encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self, range_header, status):
                with server._lock:
                    seen = SeenRequest(self.command, self.path, range_header, status, self.headers.get("If-Range"))
                    server.requests.append(seen)

        return Handler
