"""A local stand-in for LaunchDarkly's REST API, for the benchmarks: loopback only, threaded, counting.

It answers just what the dashboard asks during an import:

- `GET /api/v2/projects?expand=environments` — one project `shop` with environments `live` and `test`;
- `GET /api/v2/segments/{p}/{e}/{s}` — any segment, as a big (unbounded) one;
- `POST /api/v2/segments/{p}/{e}/{s}/imports` — reads the whole multipart body, counts its bytes and the
  lines that start with the key prefix, and answers 204 with `Location: …/imports/<id>`;
- `GET /api/v2/segments/{p}/{e}/{s}/imports/{id}` — that import, in the status given by `--import-status`,
  counting the GETs per import;
- `GET /_bench/stats` — what it has received (JSON), for the benchmark.

`python bench/standin.py --port 8765 [--import-status complete|in_progress]`
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "api-bench"  # noqa: S105 - the made-up token the benchmarks give the dashboard
CHUNK = 1024 * 1024
SEGMENT = re.compile(r"^/api/v2/segments/([^/]+)/([^/]+)/([^/]+)$")
IMPORTS = re.compile(r"^/api/v2/segments/([^/]+)/([^/]+)/([^/]+)/imports$")
ONE_IMPORT = re.compile(r"^/api/v2/segments/([^/]+)/([^/]+)/([^/]+)/imports/([^/]+)$")

PROJECTS = {
    "items": [
        {
            "key": "shop",
            "name": "Shop",
            "environments": {
                "items": [
                    {"key": "live", "name": "Live", "color": "00ff00"},
                    {"key": "test", "name": "Test", "color": "0000ff"},
                ]
            },
        }
    ],
    "totalCount": 1,
}


def big_segment(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": key.upper(),
        "unbounded": True,
        "unboundedContextKind": "user",
        "tags": [],
        "creationDate": 1,
        "lastModifiedDate": 1,
        "version": 1,
        "rules": [],
        "deleted": False,
        "generation": 1,
        "_links": {},
        "_unboundedMetadata": {"includedCount": 5},
    }


class State:
    def __init__(self, import_status: str, key_prefix: bytes) -> None:
        self.lock = threading.Lock()
        self.import_status = import_status
        self.key_prefix = b"\n" + key_prefix
        self.ids = itertools.count(1)
        self.imports: list[dict[str, Any]] = []  # every import POST received, in order
        self.import_gets: Counter[str] = Counter()  # GET …/imports/<id>, per id
        self.import_get_times: dict[str, list[float]] = {}  # when each was asked (wall clock)
        self.requests: Counter[str] = Counter()  # every request, by kind


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the dashboard's session; 100-continue for curl
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # --- answers ---

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == TOKEN:
            return True
        self._json(401, {"code": "unauthorized", "message": "Invalid account identifier"})
        return False

    def _count(self, kind: str) -> None:
        with self.server.state.lock:
            self.server.state.requests[kind] += 1

    # --- routes ---

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        state = self.server.state
        if path == "/_bench/stats":
            with state.lock:
                body = {
                    "imports": list(state.imports),
                    "import_gets": dict(state.import_gets),
                    "import_get_times": {k: list(v) for k, v in state.import_get_times.items()},
                    "requests": dict(state.requests),
                }
            self._json(200, body)
            return
        if not self._authorised():
            return
        if path == "/api/v2/projects":
            self._count("GET projects")
            self._json(200, PROJECTS)
        elif match := ONE_IMPORT.match(path):
            segment, import_id = match.group(3), match.group(4)
            with state.lock:
                state.requests["GET import"] += 1
                state.import_gets[import_id] += 1
                state.import_get_times.setdefault(import_id, []).append(time.time())
            self._json(
                200,
                {
                    "id": import_id,
                    "segmentKey": segment,
                    "status": state.import_status,
                    "mode": "merge",
                    "creationTime": 1,
                    "_links": {},
                    "files": [],
                },
            )
        elif match := SEGMENT.match(path):
            self._count("GET segment")
            self._json(200, big_segment(match.group(3)))
        else:
            self._count("GET other")
            self._json(404, {"code": "not_found", "message": "Unknown resource"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        match = IMPORTS.match(path)
        if match is None:
            self._count("POST other")
            self._drain()
            self._json(404, {"code": "not_found", "message": "Unknown resource"})
            return
        started = time.time()
        size, keys = self._drain()
        finished = time.time()
        if self.headers.get("Authorization") not in (TOKEN, None):
            self._json(401, {"code": "unauthorized", "message": "Invalid account identifier"})
            return
        project, environment, segment = match.groups()
        state = self.server.state
        with state.lock:
            import_id = f"imp-{next(state.ids)}"
            state.requests["POST import"] += 1
            state.imports.append(
                {
                    "id": import_id,
                    "segment": f"{project}/{environment}/{segment}",
                    "bytes": size,
                    "keys": keys,
                    "started": started,
                    "finished": finished,
                    "client": self.headers.get("User-Agent", ""),
                }
            )
        self._empty(
            204, {"Location": f"/api/v2/segments/{project}/{environment}/{segment}/imports/{import_id}"}
        )

    def _drain(self) -> tuple[int, int]:
        """Read the whole body (by length, or chunked); count its bytes and its keys."""
        prefix = self.server.state.key_prefix
        size = keys = 0
        tail = b""

        def take(data: bytes) -> None:
            nonlocal size, keys, tail
            size += len(data)
            window = tail + data
            keys += window.count(prefix)
            tail = window[-(len(prefix) - 1) :]

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                length = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self._read_exactly(length, take)
                self.rfile.readline()
        else:
            self._read_exactly(int(self.headers.get("Content-Length") or 0), take)
        return size, keys

    def _read_exactly(self, length: int, take: Callable[[bytes], None]) -> None:
        """Hand `length` bytes of the body to `take`, a chunk at a time."""
        while length:
            data = self.rfile.read(min(CHUNK, length))
            if not data:
                raise ConnectionError("body cut short")
            length -= len(data)
            take(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: State) -> None:
        super().__init__(address, Handler)
        self.state = state


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--import-status", default="complete")
    parser.add_argument("--key-prefix", default="user-")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), State(args.import_status, args.key_prefix.encode()))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
