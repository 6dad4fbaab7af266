"""Fault injection for the sandbox, switched by the SANDBOX_FAULTS setting.

SANDBOX_FAULTS is a list of rules; the first rule that matches a request applies:

    {"method": "GET", "path": "/imports/", "status": 429, "retry_after": 2, "times": 1}

- `method` (default any) and `path` (a regular expression searched in the API path) select requests;
- `latency`: seconds to wait before answering;
- `status` (+ `code`, `message`, `retry_after` seconds, `reset_in_ms` for X-Ratelimit-Reset): answer
  with that error instead of the real answer;
- `no_location`: an import is accepted (204) but its answer carries no Location header;
- `body` (with `status`): answer that text as `text/html` instead of LaunchDarkly's JSON, e.g. a 200
  login page from a proxy: `{"status": 200, "body": "<html>Sign in</html>"}`;
- `drop`: close the connection without answering, before the request body is read (a connection
  reset mid-upload, as a proxy or load balancer restarting would cause);
- `times`: the rule applies to that many matching requests, then no more (counted per process).
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

_lock = threading.Lock()
_uses: dict[str, int] = {}

_DEFAULT_CODES = {
    429: "rate_limited",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@dataclass
class Fault:
    rule: dict[str, Any]
    request: HttpRequest | None = None

    @property
    def no_location(self) -> bool:
        return bool(self.rule.get("no_location"))

    def error_response(self) -> HttpResponse | None:
        if self.rule.get("drop") and self.request is not None:
            drop_connection(self.request)
            return HttpResponse(status=400)  # never arrives: the connection is gone
        status = self.rule.get("status")
        if not status:
            return None
        status = int(status)
        if "body" in self.rule:
            return HttpResponse(str(self.rule["body"]), status=status, content_type="text/html")
        body = {
            "code": self.rule.get("code", _DEFAULT_CODES.get(status, "sandbox_fault")),
            "message": self.rule.get("message", f"Sandbox fault injected: HTTP {status}"),
        }
        response = JsonResponse(body, status=status)
        if "retry_after" in self.rule:
            response["Retry-After"] = str(self.rule["retry_after"])
        if "reset_in_ms" in self.rule:
            response["X-Ratelimit-Reset"] = str(int(time.time() * 1000) + int(self.rule["reset_in_ms"]))
        return response


def reset() -> None:
    """Forget how often each rule was used (tests call this between cases)."""
    with _lock:
        _uses.clear()


def match(request: HttpRequest, api_path: str) -> Fault | None:
    for index, rule in enumerate(settings.SANDBOX_FAULTS):
        method = rule.get("method", "*").upper()
        if method not in ("*", request.method):
            continue
        if not re.search(rule.get("path", ""), api_path):
            continue
        times = rule.get("times")
        counter = f"{index}:{rule!r}"
        with _lock:
            used = _uses.get(counter, 0)
            if times is not None and used >= int(times):
                continue
            _uses[counter] = used + 1
        if rule.get("latency"):
            time.sleep(float(rule["latency"]))
        return Fault(rule, request)
    return None


def drop_connection(request: HttpRequest) -> None:
    """Reset the client's connection at once (RST, not a polite close), from inside a view.

    The socket is found where the server keeps it: gunicorn puts it in the environ; Django's
    development and test servers only through the request's input stream."""
    sock = request.META.get("gunicorn.socket") or _socket_under(request.META.get("wsgi.input"))
    if sock is None:
        raise RuntimeError("this server does not expose its socket; the drop fault cannot be used")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RDWR)


def _socket_under(stream: Any) -> socket.socket | None:
    for _ in range(8):  # LimitedStream(s) -> buffered reader -> SocketIO -> socket
        if stream is None or isinstance(stream, socket.socket):
            return stream
        inner = ("stream", "_stream", "raw", "_sock")
        found = next((getattr(stream, name) for name in inner if hasattr(stream, name)), None)
        # Django's LimitedStream keeps only its stream's bound `read`.
        stream = found if found is not None else getattr(getattr(stream, "_read", None), "__self__", None)
    return None
