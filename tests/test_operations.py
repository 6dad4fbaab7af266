"""Operations: /healthz reports the workers' check-ins, logs are one structured line per event with
request id, user and import id and never the token or a file's keys, and a worker that cannot see an
upload's file says so instead of failing silently."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from segments_app.imports import worker
from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus, WorkerCheckin
from segments_app.request_log import ContextFilter, JsonFormatter, PlainFormatter
from tests.factories import recorded_upload

TOKEN = "api-0f9e8d7c-rotate-me-secret-token"


# --- /healthz and the workers' check-ins ----------------------------------------------------------


def check_in(seconds_ago: float, name: str = "host-a:101:abcd") -> None:
    now = timezone.now()
    WorkerCheckin.objects.create(
        name=name, host="host-a", pid=101, started_at=now - timedelta(hours=1), last_seen=now
    )
    WorkerCheckin.objects.filter(name=name).update(last_seen=now - timedelta(seconds=seconds_ago))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("seconds_ago", "worker_state", "required_status"),
    [(None, "none", 503), (3, "ok", 200), (600, "stale", 503)],
    ids=["no-worker-ever", "fresh-check-in", "old-check-in"],
)
def test_healthz_reports_the_newest_worker_check_in(
    client: Any, seconds_ago: float | None, worker_state: str, required_status: int
) -> None:
    if seconds_ago is not None:
        check_in(seconds_ago)
    response = client.get("/healthz")
    # The web process itself is healthy whatever the workers do: a load balancer keeps using it.
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["worker"]) == ("ok", "ok", worker_state)
    if seconds_ago is None:
        assert body["worker_last_seen_seconds"] is None
    else:
        assert seconds_ago <= body["worker_last_seen_seconds"] < seconds_ago + 5
    # Monitoring that asks for the workers too gets a 503 unless one checked in lately.
    required = client.get("/healthz?require_worker=1")
    assert required.status_code == required_status
    assert required.json()["worker"] == worker_state
    assert required.json()["status"] == ("ok" if required_status == 200 else "error")


@pytest.mark.django_db
def test_one_fresh_worker_among_stale_ones_is_enough(client: Any) -> None:
    check_in(900, name="old-host:1:aaaa")
    check_in(1, name="new-host:2:bbbb")
    assert client.get("/healthz?require_worker=1").json()["worker"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_the_worker_checks_in_while_it_runs_and_removes_its_check_in_when_it_stops(
    settings: Any,
) -> None:
    settings.WORKER_CHECKIN_SECONDS = 0.1
    stop = threading.Event()
    thread = threading.Thread(target=worker.housekeeping, args=(stop,), kwargs={"name": "test-host:7:cafe"})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not WorkerCheckin.objects.filter(name="test-host:7:cafe").exists():
            assert time.monotonic() < deadline, "the worker never checked in"
            time.sleep(0.02)
        first = WorkerCheckin.objects.get(name="test-host:7:cafe").last_seen
        while WorkerCheckin.objects.get(name="test-host:7:cafe").last_seen == first:
            assert time.monotonic() < deadline, "the check-in was never renewed"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert not WorkerCheckin.objects.exists()


# --- structured logs --------------------------------------------------------------------------------


class Lines:
    """What the console handler would write, as the settings wire it (filters and formatter)."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.startswith("{")]

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield Lines(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_the_settings_wire_the_structured_console_handler() -> None:
    console = django_settings.LOGGING["handlers"]["console"]
    assert console["filters"] == ["context"]
    assert django_settings.LOGGING["formatters"][console["formatter"]]["()"].startswith(
        "segments_app.request_log."
    )
    assert django_settings.MIDDLEWARE[0] == "segments_app.request_log.RequestIdMiddleware"


@pytest.mark.django_db
def test_a_request_logs_one_line_with_its_request_id_and_user(logged_in: Any, log_lines: Lines) -> None:
    response = logged_in.get("/imports/", HTTP_X_REQUEST_ID="lb-req-0001-abcdef")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "lb-req-0001-abcdef"
    (line,) = [x for x in log_lines.json() if x["logger"] == "segments_app.requests"]
    assert line["request_id"] == "lb-req-0001-abcdef"
    assert line["user"] == "pm"
    assert line["level"] == "INFO"
    assert line["message"].startswith("GET /imports/ 200 ")
    assert {"time", "level", "logger", "message"} <= set(line)


def test_healthz_reads_no_session_even_for_a_signed_in_caller(
    logged_in: Any, django_assert_num_queries: Any
) -> None:
    """Load balancers ask it every few seconds; naming the caller for the log line once cost it the
    session and user queries on every ask."""
    with django_assert_num_queries(1) as captured:  # the newest worker check-in, nothing else
        assert logged_in.get("/healthz").status_code == 200
    assert "django_session" not in captured.captured_queries[0]["sql"]


def test_a_page_after_sign_in_still_logs_its_user_on_the_views_own_lines(
    logged_in: Any, log_lines: Lines
) -> None:
    logged_in.get("/imports/")
    assert {x["user"] for x in log_lines.json() if x["logger"] == "segments_app.requests"} == {"pm"}


def test_a_refused_request_logs_one_line_without_a_traceback(
    client: Any, make_user: Any, log_lines: Lines
) -> None:
    client.force_login(make_user("viewer"))
    assert client.post("/segments/shop/live/new/", {}).status_code == 403
    refusals = [x for x in log_lines.json() if x["logger"] == "django.request"]
    assert [x["message"] for x in refusals] == ["Forbidden (Permission denied): /segments/shop/live/new/"]
    assert "Traceback" not in log_lines.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "incoming", ["", "short", "evil\nforged line", "x" * 101, "<script>alert(1)</script>xx"]
)
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
    client: Any, log_lines: Lines, incoming: str
) -> None:
    headers = {"HTTP_X_REQUEST_ID": incoming} if incoming else {}
    response = client.get("/accounts/login/", **headers)
    assigned = response["X-Request-ID"]
    assert assigned != incoming
    assert len(assigned) == 32
    assert assigned.isalnum()
    (line,) = [x for x in log_lines.json() if x["logger"] == "segments_app.requests"]
    assert line["request_id"] == assigned
    assert "user" not in line  # nobody is logged in
    assert "forged" not in log_lines.text


@pytest.mark.django_db
def test_two_requests_get_different_ids(client: Any) -> None:
    first = client.get("/accounts/login/")["X-Request-ID"]
    second = client.get("/accounts/login/")["X-Request-ID"]
    assert first != second


def validating(user: Any, content: bytes) -> ImportRecord:
    record, _ = recorded_upload(user, content)
    return record


@pytest.mark.django_db
def test_a_worker_step_logs_the_import_id_and_never_the_files_keys(user: Any, log_lines: Lines) -> None:
    record = validating(user, b"secret-customer-4711\nsecret-customer-4712\n")
    assert worker.run_once("w-log")
    assert ImportRecord.objects.get(pk=record.pk).status == ImportStatus.QUEUED
    lines = [x for x in log_lines.json() if x.get("import_id") == str(record.pk)]
    assert lines, log_lines.text
    assert any("queued" in x["message"] for x in lines)
    assert "secret-customer" not in log_lines.text
    # Outside the step, lines carry no import id.
    logging.getLogger("segments_app.test").info("after the step")
    assert "import_id" not in log_lines.json()[-1]


@pytest.mark.parametrize("formatter", [JsonFormatter(), PlainFormatter()], ids=["json", "plain"])
def test_the_token_never_appears_in_a_log_line_even_if_a_message_contains_it(
    settings: Any, formatter: logging.Formatter
) -> None:
    settings.LD_API_TOKEN = TOKEN
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    log = logging.getLogger("segments_app.test-redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("LaunchDarkly said: bad Authorization header %s", TOKEN)
        log.warning(f"plain message with {TOKEN} inside")
        try:
            raise RuntimeError(f"upstream echoed Authorization: {TOKEN}")
        except RuntimeError:
            log.exception("A call failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = stream.getvalue()
    assert TOKEN not in text
    assert text.count("[redacted]") == 3, text
    assert "RuntimeError" in text  # the traceback is kept, only the token is gone


# --- a worker that cannot see the file ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_missing_upload_fails_the_import_clearly(user: Any, log_lines: Lines) -> None:
    record = validating(user, b"k-1\nk-2\n")
    (Path(record.storage_dir) / "upload.csv").unlink()
    assert worker.run_once("w-missing")
    record.refresh_from_db()
    assert record.status == ImportStatus.FAILED
    assert record.error_code == "file_missing"
    last = ImportEvent.objects.filter(record=record).order_by("-id").first()
    assert "could not be found" in last.message
    assert "administrator" in last.message
    errors = [x for x in log_lines.json() if x["level"] == "ERROR"]
    assert any("IMPORT_STORAGE_DIR" in x["message"] for x in errors), log_lines.text
    assert record.next_attempt_at is None  # final: not retried forever


@pytest.mark.django_db
def test_a_missing_part_file_is_never_reported_as_sent(user: Any) -> None:
    record = validating(user, b"k-1\nk-2\n")
    assert worker.run_once("w-check")
    record.refresh_from_db()
    assert record.status == ImportStatus.QUEUED
    part = ImportPart.objects.get(record=record)
    Path(part.file_path).unlink()
    ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now())
    assert worker.run_once("w-send")
    record.refresh_from_db()
    assert record.status == ImportStatus.FAILED
    assert record.error_code == "file_missing"
    assert ImportPart.objects.get(pk=part.pk).status == ImportStatus.QUEUED  # nothing was submitted


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "json"),
        ({"DEBUG": "1"}, "plain"),
        ({"DEBUG": "1", "LOG_FORMAT": "JSON"}, "json"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or plain; got 'xml'."),
    ],
    ids=["production-default", "debug-default", "chosen", "refused"],
)
def test_log_format_is_json_in_production_and_a_typo_stops_the_start(
    env: dict[str, str], expected: str
) -> None:
    import os
    import subprocess
    import sys

    clean = {
        k: v for k, v in os.environ.items() if k not in ("DEBUG", "LOG_FORMAT", "DJANGO_SETTINGS_MODULE")
    }
    done = subprocess.run(
        [sys.executable, "-c", "from dashboard import settings; print(settings.LOG_FORMAT)"],
        cwd=Path(__file__).resolve().parents[1],
        env={**clean, "SECRET_KEY": "test-secret-key-not-for-production", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == 0:
        assert done.stdout.strip() == expected
    else:
        assert expected in done.stderr
        assert "ImproperlyConfigured" in done.stderr
