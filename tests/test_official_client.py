"""LaunchDarkly's own generated Python client (`launchdarkly-api`) as an independent judge of the dashboard.

For every public method of `segments_app.launchdarkly.LaunchDarklyClient` that calls LaunchDarkly, the same
operation is sent twice to the built-in sandbox over real HTTP: once by the dashboard's client, once by the
official client (whose answers must deserialise into its own models). A capture in front of the sandbox's
WSGI app records both requests as they arrived, and they must match: method, path (as sent, percent-encoding
included), query parameter names and decoded values, the headers that matter (the raw token in
`Authorization`, `LD-API-Version: 20240415`, the body's media type), JSON bodies and multipart fields.

The official client is generated from LaunchDarkly's full OpenAPI spec, so neither the dashboard nor the
sandbox can drift from LaunchDarkly's published contract without a test here failing. Without the package the
tests are skipped with the reason; in CI (`CI=true`) that skip is a failure.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import pytest

from sandbox.models import SandboxEnvironment, SandboxSegment
from segments_app.connection import launchdarkly_client
from segments_app.launchdarkly import LaunchDarklyClient

try:
    import launchdarkly_api
    from launchdarkly_api import models
    from launchdarkly_api.api.environments_api import EnvironmentsApi
    from launchdarkly_api.api.projects_api import ProjectsApi
    from launchdarkly_api.api.segments_api import SegmentsApi
except ImportError as exc:  # pragma: no cover - the fixture below reports it
    launchdarkly_api = None
    MISSING = f"launchdarkly-api is not installed ({exc}): run `make install-test`"
else:
    MISSING = ""

pytestmark = pytest.mark.django_db(transaction=True)

API_VERSION = "20240415"
PROJECT, ENV = "demo", "production"
# The documented filter syntax (LaunchDarkly's API reference, getSegments "Filtering segments"): values are
# quoted, lists are JSON-like. This is what the official client is given; the dashboard builds its own.
SEARCH = {"query": "VIP customers", "tags": ["vip", "marketing"], "unbounded": True}
DOCUMENTED_FILTER = 'query equals "VIP customers",tags anyOf ["vip","marketing"],unbounded equals true'
# The environ key under which the capture keeps the request target exactly as it was sent.
RAW_TARGET = "segment_dashboard.raw_target"
RAW_HEADERS = "segment_dashboard.raw_headers"

T = TypeVar("T")
U = TypeVar("U")


# --- the capture in front of the sandbox ----------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as it reached the sandbox's server."""

    method: str
    target: str  # path and query, exactly as sent on the request line
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def __str__(self) -> str:
        shown = {k: v for k, v in self.headers.items() if k != "authorization"}
        return f"{self.method} {self.target} {shown} body={self.body[:300]!r}"


@dataclass
class Wire:
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Seen) -> None:
        with self.lock:
            self.seen.append(request)

    @contextmanager
    def recording(self) -> Iterator[list[Seen]]:
        """The requests that arrive while the block runs (the calls are synchronous: each request is
        recorded before its answer is sent)."""
        with self.lock:
            start = len(self.seen)
        caught: list[Seen] = []
        yield caught
        with self.lock:
            caught.extend(self.seen[start:])


@pytest.fixture
def wire(sandbox: str, live_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    """Records every request the live server (and so the sandbox) receives, body included."""
    from django.core.servers import basehttp

    original_get_environ = basehttp.WSGIRequestHandler.get_environ

    def get_environ(handler: Any) -> dict[str, Any]:
        environ = original_get_environ(handler)
        environ[RAW_TARGET] = handler.path  # PATH_INFO is percent-decoded; this is what was sent
        # The headers as sent (the WSGI environ invents a `text/plain` CONTENT_TYPE when there is none).
        environ[RAW_HEADERS] = {name.lower(): value for name, value in handler.headers.items()}
        return environ

    monkeypatch.setattr(basehttp.WSGIRequestHandler, "get_environ", get_environ)
    captured = Wire()
    httpd = live_server.thread.httpd
    app = httpd.get_app()

    def capture(environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        captured.record(Seen(environ["REQUEST_METHOD"], environ[RAW_TARGET], environ[RAW_HEADERS], body))
        return app(environ, start_response)

    httpd.set_app(capture)
    yield captured
    httpd.set_app(app)


# --- the two clients ------------------------------------------------------------------------------------


@dataclass
class Both:
    """The dashboard's client and the official one, both pointed at the sandbox, and the requests each
    case exchanged (pairs of: the dashboard's requests, the official client's requests)."""

    ours: LaunchDarklyClient
    api: Any  # launchdarkly_api.ApiClient
    wire: Wire
    pairs: list[tuple[list[Seen], list[Seen]]] = field(default_factory=list)

    @property
    def projects(self) -> Any:
        return ProjectsApi(self.api)

    @property
    def environments(self) -> Any:
        return EnvironmentsApi(self.api)

    @property
    def segments(self) -> Any:
        return SegmentsApi(self.api)

    def exchange(
        self, ours: Callable[[], T], theirs: Callable[[], U], *, between: Callable[[T], object] | None = None
    ) -> tuple[T, U]:
        """Send one operation through each client; both requests are kept for comparison. `between` runs
        after the dashboard's call, outside both captures (to wait for it, or to undo it)."""
        with self.wire.recording() as our_requests:
            our_answer = ours()
        if between is not None:
            between(our_answer)
        with self.wire.recording() as their_requests:
            their_answer = theirs()
        self.pairs.append((our_requests, their_requests))
        return our_answer, their_answer


@pytest.fixture
def both(wire: Wire, contract: list[str], settings: Any) -> Iterator[Both]:
    if launchdarkly_api is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the official-client contract tests, but {MISSING}")
        pytest.skip(MISSING)
    configuration = launchdarkly_api.Configuration(
        host=settings.LD_SANDBOX_URL, api_key={"ApiKey": settings.LD_SANDBOX_TOKEN}
    )
    api = launchdarkly_api.ApiClient(configuration)
    # LaunchDarkly's advice for every client: pin the API version per request (the generated client does
    # not send it by itself).
    api.set_default_header("LD-API-Version", API_VERSION)
    with launchdarkly_client() as ours:
        yield Both(ours=ours, api=api, wire=wire)
    api.rest_client.pool_manager.clear()


# --- the operations: one case per LaunchDarklyClient method that calls LaunchDarkly -----------------------


def wait_until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def big_segment(both: Both, key: str, members: tuple[str, ...] = ()) -> str:
    """A big segment made for one case (set up through the dashboard's client, outside any exchange)."""
    both.ours.create_segment(PROJECT, ENV, key=key, name=key, unbounded=True, unbounded_context_kind="user")
    if members:
        both.ours.update_context_targets(PROJECT, ENV, key, add=members)
    return key


def import_done(both: Both, segment: str, import_id: str) -> Callable[[], bool]:
    return lambda: both.ours.get_import(PROJECT, ENV, segment, import_id)["status"] == "complete"


def case_list_projects(both: Both) -> None:
    page, answer = both.exchange(
        lambda: both.ours.list_projects(),
        lambda: both.projects.get_projects(limit=20, offset=0, expand="environments"),
    )
    assert isinstance(answer, models.Projects)
    assert [p.key for p in answer.items] == [p.key for p in page.items] == ["demo"]
    assert [e.key for e in answer.items[0].environments.items] == [e.key for e in page.items[0].environments]


def case_iter_projects(both: Both) -> None:
    def official_pages() -> list[Any]:
        pages, offset = [], 0
        while True:
            page = both.projects.get_projects(limit=1, offset=offset, expand="environments")
            pages.append(page)
            offset += len(page.items)
            if not page.items or offset >= page.total_count:
                return pages

    ours, pages = both.exchange(lambda: list(both.ours.iter_projects(page_size=1)), official_pages)
    assert all(isinstance(page, models.Projects) for page in pages)
    assert [p.key for page in pages for p in page.items] == [p.key for p in ours]


def case_list_environments(both: Both) -> None:
    page, answer = both.exchange(
        lambda: both.ours.list_environments(PROJECT),
        lambda: both.environments.get_environments_by_project(PROJECT, limit=20, offset=0),
    )
    assert isinstance(answer, models.Environments)
    assert [e.key for e in answer.items] == [e.key for e in page.items] == ["production", "staging"]


def case_list_segments(both: Both) -> None:
    page, answer = both.exchange(
        lambda: both.ours.list_segments(PROJECT, ENV, limit=5, offset=0, sort="name", **SEARCH),
        lambda: both.segments.get_segments(
            PROJECT, ENV, limit=5, offset=0, sort="name", filter=DOCUMENTED_FILTER
        ),
    )
    assert isinstance(answer, models.UserSegments)
    assert all(isinstance(s, models.UserSegment) for s in answer.items)
    # The documented filter finds what the dashboard's filter finds: the seeded VIP segment.
    assert [s.key for s in answer.items] == [s.key for s in page.items] == ["vip-customers"]


def case_get_segment(both: Both) -> None:
    ours, answer = both.exchange(
        lambda: both.ours.get_segment(PROJECT, ENV, "beta-testers"),
        lambda: both.segments.get_segment(PROJECT, ENV, "beta-testers"),
    )
    assert isinstance(answer, models.UserSegment)
    assert (answer.key, answer.name, sorted(answer.included or [])) == (
        ours.key,
        ours.name,
        sorted(ours.included),
    )
    assert [f.key for f in answer.flags or []] == [f.key for f in ours.flags]


def case_create_segment(both: Both) -> None:
    fields = {
        "key": "contract-created",
        "name": "Contract created",
        "description": "Made by both clients in turn",
        "tags": ["contract"],
        "unbounded": True,
    }

    def ours() -> Any:
        created = both.ours.create_segment(PROJECT, ENV, **fields, unbounded_context_kind="user")
        # The same key again for the official client: the two requests are then byte-comparable.
        SandboxSegment.objects.filter(key=fields["key"]).delete()
        return created

    body = models.SegmentBody(**fields, unbounded_context_kind="user")
    created, answer = both.exchange(ours, lambda: both.segments.post_segment(PROJECT, ENV, body))
    assert isinstance(answer, models.UserSegment)
    assert (answer.key, answer.unbounded, answer.unbounded_context_kind) == (created.key, True, "user")


def case_delete_segment(both: Both) -> None:
    big_segment(both, "contract-deleted")

    def ours() -> None:
        both.ours.delete_segment(PROJECT, ENV, "contract-deleted")
        assert not SandboxSegment.objects.filter(key="contract-deleted").exists()
        # The same segment again for the official client to delete (made without a request).
        SandboxSegment.objects.create(
            environment=SandboxEnvironment.objects.get(project__key=PROJECT, key=ENV),
            key="contract-deleted",
            name="contract-deleted",
        )

    _, answer = both.exchange(ours, lambda: both.segments.delete_segment(PROJECT, ENV, "contract-deleted"))
    assert answer is None
    assert not SandboxSegment.objects.filter(key="contract-deleted").exists()


def case_get_context_membership(both: Both) -> None:
    # A key that must be percent-encoded in the path: both clients must encode it the same way.
    key = "ada lovelace@example.com"
    big_segment(both, "contract-members", members=(key,))
    ours, answer = both.exchange(
        lambda: both.ours.get_context_membership(PROJECT, ENV, "contract-members", key),
        lambda: both.segments.get_segment_membership_for_context(PROJECT, ENV, "contract-members", key),
    )
    assert isinstance(answer, models.BigSegmentTarget)
    assert (answer.user_key, answer.included, answer.excluded) == (key, True, False)
    assert ours == answer.to_dict()


def case_update_context_targets(both: Both) -> None:
    big_segment(both, "contract-targets", members=("gone-1",))
    add, remove = ["ada@example.com", "grace"], ["gone-1"]
    state = models.SegmentUserState(included=models.SegmentUserList(add=add, remove=remove))
    _, answer = both.exchange(
        lambda: both.ours.update_context_targets(PROJECT, ENV, "contract-targets", add=add, remove=remove),
        lambda: both.segments.update_big_segment_context_targets(PROJECT, ENV, "contract-targets", state),
    )
    assert answer is None
    segment = SandboxSegment.objects.get(key="contract-targets")
    assert set(segment.visible_members().values_list("context_key", flat=True)) == set(add)


KEYS_CSV = b"csv-key-1\ncsv-key-2\n"


def case_start_import(both: Both) -> None:
    segment = big_segment(both, "contract-import")

    def finished(started: Any) -> None:
        assert started.import_id
        # LaunchDarkly refuses a second import while one runs in the environment.
        wait_until("the dashboard's import", import_done(both, segment, started.import_id))

    started, answer = both.exchange(
        lambda: both.ours.start_import(
            PROJECT, ENV, segment, io.BytesIO(KEYS_CSV), filename="keys.csv", mode="merge"
        ),
        lambda: both.segments.create_big_segment_import_with_http_info(
            PROJECT, ENV, segment, file=("keys.csv", KEYS_CSV), mode="merge", wait_on_approvals=False
        ),
        between=finished,
    )
    assert answer.status_code == 204
    assert answer.data is None
    location = answer.headers["Location"]
    assert location.rsplit("/", 1)[-1] != started.import_id  # a new import, its ID in Location
    wait_until("the official client's import", import_done(both, segment, location.rsplit("/", 1)[-1]))


def case_get_import(both: Both) -> None:
    segment = big_segment(both, "contract-import-status")
    started = both.ours.start_import(PROJECT, ENV, segment, io.BytesIO(KEYS_CSV), filename="keys.csv")
    assert started.import_id
    wait_until("the import", import_done(both, segment, started.import_id))
    ours, answer = both.exchange(
        lambda: both.ours.get_import(PROJECT, ENV, segment, started.import_id),
        lambda: both.segments.get_big_segment_import(PROJECT, ENV, segment, started.import_id),
    )
    assert isinstance(answer, models.ModelImport)
    assert (answer.id, answer.status, answer.mode) == (ours["id"], "complete", "merge")


def export_ready(both: Both, segment: str, export_id: str) -> Callable[[], bool]:
    return lambda: both.ours.get_export(PROJECT, ENV, segment, export_id).is_complete


def case_start_export(both: Both) -> None:
    segment = big_segment(both, "contract-export", members=("e-1", "e-2"))
    started, answer = both.exchange(
        lambda: both.ours.start_export(PROJECT, ENV, segment),
        lambda: both.segments.create_big_segment_export_with_http_info(PROJECT, ENV, segment),
    )
    assert answer.status_code == 200
    assert answer.data is None
    their_id = answer.headers["Location"].rsplit("/", 1)[-1]
    assert started.export_id
    assert their_id
    assert their_id != started.export_id
    for export_id in (started.export_id, their_id):
        wait_until("the export", export_ready(both, segment, export_id))


def case_get_export(both: Both) -> None:
    segment = big_segment(both, "contract-export-status", members=("e-1", "e-2"))
    export_id = both.ours.start_export(PROJECT, ENV, segment).export_id
    assert export_id
    wait_until("the export", export_ready(both, segment, export_id))
    ours, answer = both.exchange(
        lambda: both.ours.get_export(PROJECT, ENV, segment, export_id),
        lambda: both.segments.get_big_segment_export(PROJECT, ENV, segment, export_id),
    )
    assert isinstance(answer, models.Export)
    assert (answer.id, answer.status, answer.size_bytes) == (ours.export_id, "complete", ours.size_bytes)
    # The file the dashboard follows is a link the official model carries.
    assert ours.file_url in {link.href for link in answer.links.values()}


def case_download_export(both: Both, tmp_path: Any) -> None:
    """Not an API operation of its own: the export's file link, followed by each client's transport (the
    official client has no method for it, so its ApiClient is asked for a plain GET of that link)."""
    segment = big_segment(both, "contract-download", members=("d-1", "d-2"))
    export_id = both.ours.start_export(PROJECT, ENV, segment).export_id
    assert export_id
    wait_until("the export", export_ready(both, segment, export_id))
    official_export = both.segments.get_big_segment_export(PROJECT, ENV, segment, export_id)
    href = next(link.href for link in official_export.links.values() if "csv" in (link.type or ""))
    parts = urlsplit(href)

    def theirs() -> bytes:
        request = both.api.param_serialize(
            method="GET",
            resource_path=parts.path,
            query_params=parse_qsl(parts.query),
            header_params={"Accept": "text/csv, */*", **both.api.default_headers},
            auth_settings=["ApiKey"],
            _host=f"{parts.scheme}://{parts.netloc}",
        )
        response = both.api.call_api(*request)
        response.read()
        assert response.status == 200
        return response.data

    # The file link is not an operation of the OpenAPI contract: the `contract` fixture's answer check
    # (a response hook of the dashboard's session) is set aside for this one request.
    hooks = both.ours.session.hooks["response"]
    kept = list(hooks)
    hooks.clear()
    try:
        size, data = both.exchange(lambda: both.ours.download_export(href, tmp_path / "members.csv"), theirs)
    finally:
        hooks.extend(kept)
    assert (tmp_path / "members.csv").read_bytes() == data
    assert size == len(data)
    assert set(data.split()) == {b"d-1", b"d-2"}


# Each LaunchDarklyClient method that calls LaunchDarkly, with the official operation it is judged against.
CASES: dict[str, tuple[str, Callable[..., None]]] = {
    "list_projects": ("ProjectsApi.get_projects", case_list_projects),
    "iter_projects": ("ProjectsApi.get_projects (paged)", case_iter_projects),
    "list_environments": ("EnvironmentsApi.get_environments_by_project", case_list_environments),
    "list_segments": ("SegmentsApi.get_segments", case_list_segments),
    "get_segment": ("SegmentsApi.get_segment", case_get_segment),
    "create_segment": ("SegmentsApi.post_segment", case_create_segment),
    "delete_segment": ("SegmentsApi.delete_segment", case_delete_segment),
    "get_context_membership": ("SegmentsApi.get_segment_membership_for_context", case_get_context_membership),
    "update_context_targets": ("SegmentsApi.update_big_segment_context_targets", case_update_context_targets),
    "start_import": ("SegmentsApi.create_big_segment_import", case_start_import),
    "get_import": ("SegmentsApi.get_big_segment_import", case_get_import),
    "start_export": ("SegmentsApi.create_big_segment_export", case_start_export),
    "get_export": ("SegmentsApi.get_big_segment_export", case_get_export),
    "download_export": ("Export._links file link, via ApiClient.call_api", case_download_export),
}
# Public methods that send nothing to LaunchDarkly.
SENDS_NOTHING = {"close"}


# --- comparing two requests --------------------------------------------------------------------------


_CLAUSE = re.compile(r"^\s*([A-Za-z]+)\s+([A-Za-z]+)\s+(.+?)\s*$", re.DOTALL)


def filter_clauses(text: str) -> list[tuple[str, str, str]]:
    """A list filter read by LaunchDarkly's documented syntax: clauses joined by `,` (AND), each
    `field operator value`, the value a quoted string, a list of quoted strings, or true/false/a number."""
    clauses, depth, quoted, escaped, start = [], 0, False, False, 0
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "[(":
            depth += 1
        elif not quoted and char in "])":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            clauses.append(text[start:index])
            start = index + 1
    clauses.append(text[start:])
    read = []
    for clause in clauses:
        match = _CLAUSE.match(clause)
        assert match, f"{clause!r} is not a `field operator value` clause"
        try:
            value = json.loads(match[3])
        except ValueError:
            raise AssertionError(
                f"the value in {clause!r} is not in LaunchDarkly's documented syntax (values are quoted)"
            ) from None
        read.append((match[1], match[2], json.dumps(value)))
    return sorted(read)


def query_values(request: Seen) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for name, value in request.query:
        values.setdefault(name, []).append(filter_clauses(value) if name == "filter" else value)
    return values


def multipart_fields(request: Seen, *, booleans: bool = False) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, file name, content type, content) of each part, in the order sent. With `booleans`, a
    field reading True/False in any case is read as `true`/`false`: the generated client writes a multipart
    boolean with Python's `str()` (`False`), where OpenAPI's form encoding (and the dashboard) write `false`."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + request.body
    )
    assert message.is_multipart(), request
    fields = []
    for part in message.iter_parts():
        content = part.get_payload(decode=True)
        if booleans and not part.get_filename() and content.lower() in (b"true", b"false"):
            content = content.lower()
        fields.append(
            (
                part.get_param("name", header="content-disposition"),
                part.get_filename(),
                part.get_content_type() if part.get_filename() else "",
                content,
            )
        )
    return fields


def assert_same_request(ours: Seen, theirs: Seen, token: str) -> None:
    where = f"\n  dashboard: {ours}\n  official:  {theirs}"
    assert ours.method == theirs.method, where
    assert ours.path == theirs.path, where
    assert sorted(name for name, _ in ours.query) == sorted(name for name, _ in theirs.query), where
    assert query_values(ours) == query_values(theirs), where
    for request in (ours, theirs):
        # The raw access token, never `Bearer …`; the API version LaunchDarkly documents as current.
        assert request.headers.get("authorization") == token, f"Authorization differs:{where}"
        assert request.headers.get("ld-api-version") == API_VERSION, where
    if "application/json" in theirs.headers.get("accept", ""):
        assert "application/json" in ours.headers.get("accept", ""), where
    assert ours.media_type == theirs.media_type, where
    assert bool(ours.body) == bool(theirs.body), where
    if theirs.media_type == "application/json":
        assert json.loads(ours.body) == json.loads(theirs.body), where
    elif theirs.media_type == "multipart/form-data":
        # The dashboard's own fields are compared as sent; only the official client's booleans are read.
        assert sorted(multipart_fields(ours)) == sorted(multipart_fields(theirs, booleans=True)), where
    else:
        assert ours.body == theirs.body, where


def public_methods() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(LaunchDarklyClient, inspect.isfunction)
        if not name.startswith("_")
    }


# --- the tests -----------------------------------------------------------------------------------------


def test_every_launchdarkly_call_of_the_dashboard_has_a_case() -> None:
    """A new method of LaunchDarklyClient without a case here fails this test."""
    assert set(CASES) == public_methods() - SENDS_NOTHING
    assert public_methods() >= SENDS_NOTHING


@pytest.mark.parametrize("method", sorted(CASES))
def test_the_official_client_sends_what_the_dashboard_sends(
    method: str, both: Both, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    operation, case = CASES[method]
    calls: list[str] = []
    original = getattr(LaunchDarklyClient, method)

    def spy(self: LaunchDarklyClient, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LaunchDarklyClient, method, spy)
    if "tmp_path" in inspect.signature(case).parameters:
        case(both, tmp_path)
    else:
        case(both)
    assert calls, f"the case for {method} never called it"
    assert both.pairs, f"the case for {method} compared nothing"
    for ours, theirs in both.pairs:
        assert ours, f"{method}: the dashboard sent nothing"
        assert len(ours) == len(theirs), (
            f"{method} / {operation}: the dashboard sent {[str(r) for r in ours]}, "
            f"the official client {[str(r) for r in theirs]}"
        )
        for our_request, their_request in zip(ours, theirs, strict=True):
            assert_same_request(our_request, their_request, settings.LD_SANDBOX_TOKEN)


def test_a_different_request_is_told_apart(both: Both, settings: Any) -> None:
    """The comparison can fail: a query value, a JSON field, a header and a multipart field that differ
    are each caught."""
    token = settings.LD_SANDBOX_TOKEN
    with both.wire.recording() as ours:
        both.ours.list_projects(limit=20)
    with both.wire.recording() as theirs:
        both.projects.get_projects(limit=19, offset=0, expand="environments")
    with pytest.raises(AssertionError):
        assert_same_request(ours[0], theirs[0], token)

    base = Seen("POST", "/x", {"authorization": token, "ld-api-version": API_VERSION}, b"")
    json_ = {**base.headers, "content-type": "application/json"}
    with pytest.raises(AssertionError):
        assert_same_request(
            Seen("POST", "/x", json_, b'{"key": "a"}'), Seen("POST", "/x", json_, b'{"key": "b"}'), token
        )
    with pytest.raises(AssertionError, match="Authorization differs"):
        assert_same_request(
            Seen("POST", "/x", {**base.headers, "authorization": f"Bearer {token}"}, b""), base, token
        )
    form = {**base.headers, "content-type": "multipart/form-data; boundary=b"}

    def multipart(wait: str) -> bytes:
        return (
            '--b\r\nContent-Disposition: form-data; name="waitOnApprovals"\r\n\r\n'
            f"{wait}\r\n--b--\r\n".encode()
        )

    assert_same_request(
        Seen("POST", "/x", form, multipart("false")), Seen("POST", "/x", form, multipart("false")), token
    )
    with pytest.raises(AssertionError):
        assert_same_request(
            Seen("POST", "/x", form, multipart("False")), Seen("POST", "/x", form, multipart("false")), token
        )
    with pytest.raises(AssertionError):
        assert_same_request(
            Seen("POST", "/x", form, multipart("false")), Seen("POST", "/x", form, multipart("True")), token
        )


def test_the_filter_is_read_by_the_documented_syntax() -> None:
    assert filter_clauses(DOCUMENTED_FILTER) == filter_clauses(
        'unbounded equals true, tags anyOf ["vip", "marketing"],query equals "VIP customers"'
    )
    with pytest.raises(AssertionError, match="documented syntax"):
        filter_clauses("query equals VIP customers")
