"""The fault matrix (issue 8, point 6): every LaunchDarkly call the product makes, by every way it can fail.

Each cell drives the call through the path a person uses — a page, or the import worker's step and then
the import's page — and asserts:

- a clear human message: the expected words, and no traceback, no raw JSON, no access token;
- the right local status: the page's HTTP status (never 500), or the import's status;
- no lost record: the SegmentActivity of a create/delete, the ImportRecord, its parts and its events remain;
- no duplicate import: POSTs to `.../imports` are counted; a second one for the same part happens only
  after LaunchDarkly clearly refused the first (409, 429, or a connection that never opened), and then
  the part is accepted once.

CALLS (what the product does → where a person sees it)
    list projects       → the projects page, which shows the error in place (200)
    list environments   → no page uses it: the client's typed error and the words `describe` gives it
    list segments       → the segment list, which shows the error in its results (200)
    get segment         → the segment page: 404 page when LaunchDarkly says 404, else the 502 error page
    create segment      → the New segment form, saying what happened (200); its SegmentActivity is failed
    delete segment      → the Delete form, saying what happened (200); its SegmentActivity is failed
    context membership  → no page uses it: the client's typed error and the words `describe` gives it
    start import        → the worker's send step (the import's status), then the import page
    get import status   → the worker's follow-up step (the import's status), then the import page

FAULTS
    400, 401, 403, 404, 409, 429 with Retry-After, 429 with X-Ratelimit-Reset, 500, 502, 503,
    read timeout, connection refused, connection reset (mid-upload, for start import),
    a 200 that is not JSON, a 204 without Location (start import only: the one call answered by 204).

The whole table runs against `responses` (test_fault_matrix_with_responses). The cells in SANDBOX_CELLS
run again against the built-in sandbox over real HTTP, faults injected by its SANDBOX_FAULTS rules
(test_fault_matrix_with_the_sandbox); connection refused there is a closed port.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.core.signals import request_finished
from django.utils import timezone
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from segments_app.connection import launchdarkly_client
from segments_app.error_messages import describe
from segments_app.forms import UNAVAILABLE_NOTHING_CREATED, UNAVAILABLE_NOTHING_DELETED
from segments_app.imports import pipeline
from segments_app.launchdarkly import LaunchDarklyClient, LaunchDarklyError
from segments_app.models import ImportEvent, ImportRecord, SegmentActivity, UpstreamPause
from tests.factories import recorded_upload, wait_until

FAULTS = [
    "400",
    "401",
    "403",
    "404",
    "409",
    "429 Retry-After",
    "429 X-Ratelimit-Reset",
    "500",
    "502",
    "503",
    "read timeout",
    "connection refused",
    "connection reset",
    "200 not JSON",
    "204 without Location",
]
LD_SAYS = "LD says: that will not do"  # LaunchDarkly's own `message` in every error body of the matrix

# What a person is told, by fault, wherever the page shows `describe(error)`.
DESCRIBED = {
    "400": f"LaunchDarkly refused the request: {LD_SAYS}",
    "401": "did not accept the configured access token",
    "403": "lacks permission",
    "404": "does not know this project, environment or segment",
    "409": f"LaunchDarkly refused the request: {LD_SAYS}",
    "429 Retry-After": "too many requests. Try again in",
    "429 X-Ratelimit-Reset": "too many requests. Try again in",
    "500": "unavailable right now",
    "502": "unavailable right now",
    "503": "unavailable right now",
    "read timeout": "unavailable right now",
    "connection refused": "unavailable right now",
    "connection reset": "unavailable right now",
    "200 not JSON": "unavailable right now",
}
UNAVAILABLE = ("429 Retry-After", "429 X-Ratelimit-Reset", "500", "502", "503", "read timeout")
UNAVAILABLE += ("connection refused", "connection reset", "200 not JSON")


@dataclass(frozen=True)
class Expect:
    """One cell: the local status (HTTP status, import status, or the error class for client-only calls)
    and words the person must see."""

    status: int | str
    says: str


def _described(status: int) -> dict[str, Expect]:
    return {fault: Expect(status, words) for fault, words in DESCRIBED.items()}


def _client_only() -> dict[str, Expect]:
    kinds = {"400": "InvalidRequest", "401": "Unauthorized", "403": "Unauthorized", "404": "NotFound"}
    kinds |= {"409": "Conflict", "429 Retry-After": "RateLimited", "429 X-Ratelimit-Reset": "RateLimited"}
    kinds |= {"connection refused": "NotReached"}
    return {f: Expect(kinds.get(f, "UpstreamUnavailable"), words) for f, words in DESCRIBED.items()}


REFUSED_FILE = Expect("failed", f"LaunchDarkly refused the file: {LD_SAYS}")
STILL_FOLLOWED = Expect("preparing", "")

# THE TABLE: call → fault → what the person sees. A fault missing from a row does not apply to that call.
EXPECTED: dict[str, dict[str, Expect]] = {
    "list projects": _described(200),
    "list environments": _client_only(),
    "list segments": _described(200),
    "get segment": _described(502) | {"404": Expect(404, "Page not found")},
    "create segment": {
        "400": Expect(200, f"LaunchDarkly refused the segment: {LD_SAYS}"),
        "401": Expect(200, DESCRIBED["401"]),
        "403": Expect(200, DESCRIBED["403"]),
        "404": Expect(200, "LaunchDarkly does not know this project or environment."),
        "409": Expect(200, "A segment with key &quot;fault-test&quot; already exists in"),
    }
    | {fault: Expect(200, UNAVAILABLE_NOTHING_CREATED) for fault in UNAVAILABLE},
    "delete segment": {
        "400": Expect(200, DESCRIBED["400"]),
        "401": Expect(200, DESCRIBED["401"]),
        "403": Expect(200, DESCRIBED["403"]),
        "404": Expect(200, "LaunchDarkly has no such segment any more"),
        "409": Expect(200, f"LaunchDarkly refused to delete the segment: {LD_SAYS}"),
    }
    | {fault: Expect(200, UNAVAILABLE_NOTHING_DELETED) for fault in UNAVAILABLE},
    # A membership 404 is asked again of the segment (LaunchDarkly's one 404 body cannot tell a key never
    # seen from a segment gone): the cell answers 404 to both, so the segment is gone, not "not a member".
    "context membership": _client_only()
    | {"404": Expect("SegmentMissing", "This segment is no longer in LaunchDarkly")},
    "start import": {
        "400": REFUSED_FILE,
        "401": REFUSED_FILE,
        "403": REFUSED_FILE,
        "404": REFUSED_FILE,
        "409": Expect("queued", "LaunchDarkly is busy with another import in this environment"),
        "429 Retry-After": Expect("queued", "LaunchDarkly asked us to slow down"),
        "429 X-Ratelimit-Reset": Expect("queued", "LaunchDarkly asked us to slow down"),
        # The pipeline reads a 5xx to an upload as a refusal: final, never sent again.
        "500": REFUSED_FILE,
        "502": REFUSED_FILE,
        "503": REFUSED_FILE,
        "read timeout": Expect("unknown", "did not answer the upload of the file"),
        "connection refused": Expect("queued", "Could not connect to LaunchDarkly; nothing was sent"),
        "connection reset": Expect("unknown", "connection to LaunchDarkly was lost before it answered"),
        "200 not JSON": Expect("unknown", "The answer to the upload of the file was not LaunchDarkly's"),
        "204 without Location": Expect("unknown", "returned no import ID"),
    },
    "get import status": {
        "400": Expect("preparing", LD_SAYS),
        "401": Expect("preparing", LD_SAYS),
        "403": Expect("preparing", LD_SAYS),
        "404": Expect("unknown", "LaunchDarkly no longer knows import"),
        "409": Expect("preparing", LD_SAYS),
    }
    | {fault: STILL_FOLLOWED for fault in UNAVAILABLE},
}
# Where an import stays queued, it is sent again once due: the only cells with a second POST.
SENT_AGAIN = {"409", "429 Retry-After", "429 X-Ratelimit-Reset", "connection refused"}

CELLS = [(call, fault) for call, row in EXPECTED.items() for fault in FAULTS if fault in row]

SANDBOX_CELLS = [
    *(("start import", f) for f in ("400", "404", "409", "429 Retry-After", "429 X-Ratelimit-Reset", "503")),
    *(("start import", f) for f in ("read timeout", "connection refused", "connection reset")),
    *(("start import", f) for f in ("200 not JSON", "204 without Location")),
    *(("get import status", f) for f in ("404", "429 Retry-After", "503", "read timeout", "200 not JSON")),
    ("list projects", "401"),
    ("list projects", "connection refused"),
    ("list segments", "400"),
    ("list segments", "429 X-Ratelimit-Reset"),
    ("get segment", "404"),
    ("get segment", "502"),
    ("get segment", "read timeout"),
    ("create segment", "409"),
    ("create segment", "503"),
    ("create segment", "connection reset"),
    ("delete segment", "404"),
    ("delete segment", "200 not JSON"),
    ("context membership", "403"),
    ("list environments", "500"),
]


# --- the two stand-ins --------------------------------------------------------------------------------


@dataclass
class Stage:
    """Where the cell runs: keys of a project, environment and big segment, the logged-in browser, the
    token that must not leak, and every request the app sent (method, path), faulted or not."""

    project: str
    env: str
    segment: str
    browser: Any
    user: Any
    token: str
    accept_import: Callable[[], None]
    sent: list[tuple[str, str]] = field(default_factory=list)

    @property
    def segments_path(self) -> str:
        return f"/api/v2/segments/{self.project}/{self.env}"

    def posts_to_imports(self) -> int:
        return sum(1 for method, path in self.sent if method == "POST" and path.endswith("/imports"))


Inject = Callable[[Stage, str, str], None]  # makes one call fail one way

# Where each call goes: method and the path after the base URL ({s} is the stage).
ROUTES: dict[str, tuple[str, str]] = {
    "list projects": ("GET", "/api/v2/projects"),
    "list environments": ("GET", "/api/v2/projects/{s.project}/environments"),
    "list segments": ("GET", "{s.segments_path}"),
    "get segment": ("GET", "{s.segments_path}/{s.segment}"),
    "create segment": ("POST", "{s.segments_path}"),
    "delete segment": ("DELETE", "{s.segments_path}/{s.segment}"),
    "context membership": ("GET", "{s.segments_path}/{s.segment}/contexts/u-1"),
    "start import": ("POST", "{s.segments_path}/{s.segment}/imports"),
    "get import status": ("GET", "{s.segments_path}/{s.segment}/imports/imp-1"),
}


def _route(call: str, stage: Stage) -> tuple[str, str]:
    method, path = ROUTES[call]
    return method, path.format(s=stage)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every request any LaunchDarklyClient sends, recorded before it leaves (so failures count too)."""
    sent: list[tuple[str, str]] = []
    original_init = LaunchDarklyClient.__init__

    def init(self: LaunchDarklyClient, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        send = self.session.request

        def recording(method: str, url: str, *a: Any, **kw: Any) -> Any:
            sent.append((method, requests.utils.urlparse(url).path.removeprefix("/sandbox")))
            return send(method, url, *a, **kw)

        self.session.request = recording  # type: ignore[method-assign]

    monkeypatch.setattr(LaunchDarklyClient, "__init__", init)
    return sent


def _responses_answer(fault: str) -> dict[str, Any]:
    """The `responses` registration that makes one call fail this way."""
    error = {"code": "some_code", "message": LD_SAYS, "id": "req-1"}
    if fault.isdigit():
        return {"status": int(fault), "json": error}
    if fault == "429 Retry-After":
        return {"status": 429, "json": error, "headers": {"Retry-After": "30"}}
    if fault == "429 X-Ratelimit-Reset":
        reset = str(int((time.time() + 30) * 1000))
        return {"status": 429, "json": error, "headers": {"X-Ratelimit-Reset": reset}}
    if fault == "read timeout":
        return {"body": requests.ReadTimeout("HTTPSConnectionPool: Read timed out. (read timeout=30)")}
    if fault == "connection refused":
        refused = NewConnectionError(
            None, "Failed to establish a new connection: [Errno 111] Connection refused"
        )
        return {"body": requests.ConnectionError(MaxRetryError(None, "/", refused))}  # type: ignore[arg-type]
    if fault == "connection reset":
        reset_error = ConnectionResetError(104, "Connection reset by peer")
        return {"body": requests.ConnectionError(ProtocolError("Connection aborted.", reset_error))}
    if fault == "200 not JSON":
        return {
            "status": 200,
            "body": "<html><body>Sign in to continue</body></html>",
            "content_type": "text/html",
        }
    if fault == "204 without Location":
        return {"status": 204}
    raise AssertionError(fault)


@pytest.fixture
def mocked_stage(
    real_ld: Any, logged_in: Any, user: Any, recorded: list[tuple[str, str]]
) -> tuple[Stage, Inject]:
    def inject(stage: Stage, call: str, fault: str) -> None:
        method, path = _route(call, stage)
        real_ld.mock.add(method, real_ld.url(path), **_responses_answer(fault))
        if (call, fault) == ("context membership", "404"):
            segment = _route("get segment", stage)[1]
            real_ld.mock.add("GET", real_ld.url(segment), **_responses_answer(fault))
        real_ld.add_projects()  # after the fault: a faulted projects call fails once, then answers

    def accept_import() -> None:
        real_ld.mock.post(
            real_ld.url("/api/v2/segments/shop/live/vip/imports"),
            status=204,
            headers={"Location": "/api/v2/segments/shop/live/vip/imports/imp-1"},
        )

    stage = Stage("shop", "live", "vip", logged_in, user, real_ld.token, accept_import, recorded)
    return stage, inject


def _sandbox_rule(fault: str, method: str, path: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"method": method, "path": f"^{path}$", "times": 1, "message": LD_SAYS}
    if fault.isdigit():
        return rule | {"status": int(fault), "code": "some_code"}
    return (
        rule
        | {
            "429 Retry-After": {"status": 429, "retry_after": 30},
            "429 X-Ratelimit-Reset": {"status": 429, "reset_in_ms": 30_000},
            "read timeout": {"latency": 1.5},
            "connection reset": {"drop": True},
            "200 not JSON": {"status": 200, "body": "<html><body>Sign in to continue</body></html>"},
            "204 without Location": {"no_location": True},
        }[fault]
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sandbox_stage(
    sandbox: str, settings: Any, logged_in: Any, user: Any, recorded: list[tuple[str, str]]
) -> tuple[Stage, Inject]:
    settings.LD_MAX_RETRIES = 0
    settings.LD_READ_TIMEOUT = 0.5
    settings.LD_UPLOAD_TIMEOUT = 0.5

    def inject(stage: Stage, call: str, fault: str) -> None:
        method, path = _route(call, stage)
        if call == "get import status":
            path = path.replace("imp-1", "[^/]+")
        if fault == "connection refused":
            settings.LD_SANDBOX_URL = f"http://127.0.0.1:{_closed_port()}/sandbox"
        else:
            settings.SANDBOX_FAULTS = [_sandbox_rule(fault, method, path)]
            if (call, fault) == ("context membership", "404"):
                segment = _route("get segment", stage)[1]
                settings.SANDBOX_FAULTS.append(_sandbox_rule(fault, "GET", segment))

    def accept_import() -> None:
        settings.SANDBOX_FAULTS = []
        settings.LD_SANDBOX_URL = sandbox

    token = settings.LD_SANDBOX_TOKEN
    stage = Stage("demo", "staging", "vip-customers", logged_in, user, token, accept_import, recorded)
    return stage, inject


# --- driving each call as a person would --------------------------------------------------------------


@dataclass
class Seen:
    status: int | str
    text: str


def _page(stage: Stage, method: str, url: str, data: dict[str, str] | None = None) -> Seen:
    response = stage.browser.post(url, data) if method == "POST" else stage.browser.get(url)
    if response.status_code == 302:  # a form that succeeded: what the next page says
        followed = stage.browser.get(response["Location"])
        return Seen(302, followed.content.decode())
    return Seen(response.status_code, response.content.decode())


def _client_call(call: str, stage: Stage) -> Seen:
    try:
        with launchdarkly_client() as client:
            if call == "list environments":
                client.list_environments(stage.project)
            else:
                client.get_context_membership(stage.project, stage.env, stage.segment, "u-1")
    except LaunchDarklyError as exc:
        return Seen(type(exc).__name__, f"{describe(exc)}\n{exc}")
    return Seen("no error", "")


def _queued_import(stage: Stage) -> ImportRecord:
    record, _ = recorded_upload(
        stage.user, b"fault-1\nfault-2\n", project=stage.project, environment=stage.env, segment=stage.segment
    )
    return pipeline.advance(record.pk)  # checked and queued; LaunchDarkly not asked yet


def _due(record: ImportRecord) -> None:
    past = timezone.now() - timedelta(seconds=60)
    ImportRecord.objects.filter(pk=record.pk).update(last_checked_at=past, next_attempt_at=past)
    UpstreamPause.objects.all().delete()


def _import_seen(record: ImportRecord) -> Seen:
    texts = [record.error_message, *record.events.values_list("message", flat=True)]
    return Seen(record.status, "\n".join(texts))


def drive(call: str, stage: Stage, inject: Callable[[], None]) -> tuple[Seen, ImportRecord | None]:
    """Make the call fail (`inject`) and drive it through the product; what the person sees."""
    base = f"/segments/{stage.project}/{stage.env}"
    if call == "get import status":
        stage.accept_import()
        record = pipeline.advance(_queued_import(stage).pk)
        assert record.status == "preparing", record.error_message
        inject()
        _due(record)
        return _import_seen(pipeline.advance(record.pk)), record
    if call == "start import":
        record = _queued_import(stage)
        inject()
        return _import_seen(pipeline.advance(record.pk)), record
    inject()
    if call in ("list environments", "context membership"):
        return _client_call(call, stage), None
    if call == "list projects":
        return _page(stage, "GET", "/"), None
    if call == "list segments":
        return _page(stage, "GET", f"{base}/?q=vip"), None
    if call == "get segment":
        return _page(stage, "GET", f"{base}/{stage.segment}/"), None
    token = uuid.uuid4().hex
    if call == "create segment":
        data = {"name": "Fault test", "key": "fault-test", "submission_token": token}
        return _page(stage, "POST", f"{base}/new/", data), None
    data = {"confirm_key": stage.segment, "submission_token": token}
    return _page(stage, "POST", f"{base}/{stage.segment}/delete/", data), None


def check_cell(call: str, fault: str, stage: Stage, inject: Inject) -> None:
    expected = EXPECTED[call][fault]
    seen, record = drive(call, stage, lambda: inject(stage, call, fault))

    # A clear message, the right local status.
    assert seen.status == expected.status, seen.text
    assert expected.says in seen.text
    for forbidden in ("Traceback", "Internal Server Error", '{"code"', '"message":', stage.token):
        assert forbidden not in seen.text, forbidden
    assert seen.status != 500

    # No lost record.
    if call in ("create segment", "delete segment"):
        activity = SegmentActivity.objects.get()
        assert activity.outcome == SegmentActivity.Outcome.FAILED
        assert stage.token not in repr(list(SegmentActivity.objects.values()))
    if record is None:
        return
    record.refresh_from_db()
    events_before = record.events.count()
    assert events_before >= 2
    assert record.parts.count() == 1
    page = stage.browser.get(f"/imports/{record.pk}/")
    assert page.status_code == 200
    assert stage.token not in page.content.decode()
    assert "Traceback" not in page.content.decode()

    # No duplicate import: one POST, and a second only after a clear refusal, then accepted once.
    assert stage.posts_to_imports() == 1
    stage.accept_import()
    _due(record)
    record = pipeline.advance(record.pk)
    if call == "start import" and fault in SENT_AGAIN:
        assert stage.posts_to_imports() == 2
        assert record.status == "preparing"
        assert record.parts.get().ld_import_id
    else:
        assert stage.posts_to_imports() == 1
    assert ImportRecord.objects.filter(pk=record.pk).exists()
    assert ImportEvent.objects.filter(record=record).count() >= events_before


@pytest.mark.django_db
@pytest.mark.parametrize(("call", "fault"), CELLS, ids=[f"{c} × {f}" for c, f in CELLS])
def test_fault_matrix_with_responses(call: str, fault: str, mocked_stage: tuple[Stage, Inject]) -> None:
    stage, inject = mocked_stage
    check_cell(call, fault, stage, inject)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("call", "fault"), SANDBOX_CELLS, ids=[f"{c} × {f}" for c, f in SANDBOX_CELLS])
def test_fault_matrix_with_the_sandbox(
    call: str, fault: str, sandbox_stage: tuple[Stage, Inject], monkeypatch: pytest.MonkeyPatch
) -> None:
    stage, inject = sandbox_stage
    answering = SandboxAnswering(monkeypatch)
    try:
        check_cell(call, fault, stage, inject)
        if call == "start import":
            from sandbox.models import SandboxImport

            # The stand-in itself never started more than one import for the one part.
            assert SandboxImport.objects.count() <= 1
    finally:
        # A slow answer the client gave up on is still being made: the database is emptied for the
        # next test only once the sandbox has finished every answer.
        answering.wait_until_done()


class SandboxAnswering:
    """The sandbox's requests still being answered, by the server thread answering each: a thread is
    counted when the sandbox looks for a fault to inject (first thing in every API request, before a
    latency rule makes it wait) and no longer once Django says its request finished (after it has let
    its database connection go)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sandbox import faults

        self.threads: set[int] = set()
        self.lock = threading.Lock()
        match = faults.match

        def counted_match(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.threads.add(threading.get_ident())
            return match(*args, **kwargs)

        monkeypatch.setattr(faults, "match", counted_match)
        request_finished.connect(self.finished, weak=False)

    def finished(self, **kwargs: Any) -> None:
        with self.lock:
            self.threads.discard(threading.get_ident())

    def wait_until_done(self, timeout: float = 10) -> None:
        try:
            wait_until(
                "the sandbox to finish answering",
                lambda: not self.threads,
                timeout=timeout,
                seen=lambda: self.threads,
            )
        finally:
            request_finished.disconnect(self.finished)


def test_the_table_covers_every_call_and_fault() -> None:
    assert set(EXPECTED) == set(ROUTES)
    for call, row in EXPECTED.items():
        missing = set(FAULTS) - set(row) - {"204 without Location"}
        assert not missing, (call, missing)
    assert set(SANDBOX_CELLS) <= set(CELLS)
