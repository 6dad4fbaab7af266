"""Structured logs: one line per event, with the request, user and import it belongs to.

Every line carries time, level, logger and message, and — where known — `request_id` (assigned by
`RequestIdMiddleware`, returned in the `X-Request-ID` header so a person can quote it), `user` and
`import_id` (set by the worker while it steps an import). `LOG_FORMAT=json` (the production default)
writes one JSON object per line for a log collector; `plain` is for a developer's terminal.

What is never logged: keys from uploaded files (nothing here reads them), and the LaunchDarkly token —
both formatters remove the configured token from every line and traceback they write, as a last line of
defence should an upstream error ever echo it. They redact what they write rather than rewriting the
record (as a filter would), so tests that capture records still see what the code really logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

request_id: ContextVar[str] = ContextVar("request_id", default="")
user: ContextVar[str] = ContextVar("user", default="")
import_id: ContextVar[str] = ContextVar("import_id", default="")

# An incoming X-Request-ID is kept only if it is short and plain, so it cannot forge log lines.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,100}$")
REDACTED = "[redacted]"
requests_logger = logging.getLogger("segments_app.requests")


@contextlib.contextmanager
def import_context(record_id: int) -> Iterator[None]:
    """Within this block every log line names the import (the worker wraps each step in it)."""
    token = import_id.set(str(record_id))
    try:
        yield
    finally:
        import_id.reset(token)


class RequestIdMiddleware:
    """Gives each request an id (a sane incoming `X-Request-ID`, else a new one), names the user once
    authentication has run, logs one line when the response is ready, and returns the id in the
    response's `X-Request-ID` header. First in MIDDLEWARE, so every later line carries the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = rid  # type: ignore[attr-defined]
        tokens = (request_id.set(rid), user.set(""), import_id.set(""))
        started = time.monotonic()
        try:
            response = self.get_response(request)
            # A login or logout during the request changes who it was for; name whoever it ends with.
            self._name_user(request)
            # Load balancers ask /healthz every few seconds: those lines only with LOG_LEVEL=DEBUG.
            requests_logger.log(
                logging.DEBUG if request.path == "/healthz" else logging.INFO,
                "%s %s %s %.0f ms",
                request.method,
                request.path,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            response["X-Request-ID"] = rid
            return response
        finally:
            import_id.reset(tokens[2])
            user.reset(tokens[1])
            request_id.reset(tokens[0])

    def process_view(self, request: HttpRequest, view_func: Callable[..., Any], *args: Any) -> None:
        # By now AuthenticationMiddleware has run: the view's own log lines carry the user too. A view
        # that needs no login (/healthz, asked every few seconds) is not made to read the session.
        if getattr(view_func, "login_required", True):
            self._name_user(request)

    @staticmethod
    def _name_user(request: HttpRequest) -> None:
        who = getattr(request, "user", None)
        if isinstance(who, SimpleLazyObject) and who._wrapped is empty:
            return  # nothing asked who it was: finding out would cost the session and user queries
        if who is not None and who.is_authenticated:
            user.set(who.get_username())


class ContextFilter(logging.Filter):
    """Copies the request id, user and import id of the current context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.user = user.get()
        record.import_id = import_id.get()
        # Django logs each refused request ("Forbidden (Permission denied)") with the exception's
        # traceback: a refusal is an answer, not a fault, so its one line is enough.
        if record.exc_info and isinstance(record.exc_info[1], PermissionDenied):
            record.exc_info = None
            record.exc_text = None
        return True


def _secrets() -> list[str]:
    try:
        from django.conf import settings

        candidates = [settings.LD_API_TOKEN, settings.LD_SANDBOX_TOKEN]
    except Exception:  # settings not configured (a script importing this module): nothing to hide yet
        return []
    # Longest first, so a token that contains another is removed whole.
    return sorted({s for s in candidates if s and len(s) >= 8}, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` without any configured secret."""
    for secret in _secrets():
        text = text.replace(secret, REDACTED)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the context fields that are set."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "user", "import_id"):
            value = getattr(record, name, "")
            if value:
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return redact(json.dumps(line, ensure_ascii=False))


class PlainFormatter(logging.Formatter):
    """A developer's terminal: the usual line, with the context fields appended when set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(
            f"{name}={value}"
            for name in ("request_id", "user", "import_id")
            if (value := getattr(record, name, ""))
        )
        first, newline, rest = text.partition("\n")
        return redact(f"{first} [{extra}]{newline}{rest}" if extra else text)
