"""Import history benchmark: the history pages and the CSV export with 100 and with 100,000 imports.

On SQLite (a fresh temporary file) and on PostgreSQL (a database `bench_history` created and dropped
on the server at BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test), in-process with
Django's test client and a logged-in user, it measures for 100 and then 100,000 `ImportRecord` rows
(bulk-created; varied users, projects, environments, segments, statuses, dates, and reports):

- the first page `/imports/`, a filtered page `/imports/?status=complete&environment=production`, a
  deep page `/imports/?page=1000` (of 2000 at 50 per page: OFFSET 49,950): best (and median) time of 11
  and the query count;
- the CSV export `/imports/export.csv`, streamed to the end: time, time to the first chunk, and the peak
  of memory allocated meanwhile (tracemalloc, in a separate pass so it does not slow the timed one).

Targets: with 100,000 records each page makes the same number of queries as with 100 and takes at most
2x as long; the export streams (its first chunk comes before the whole is built, and its memory stays
far below its size). For a page that misses, it prints the slowest query and its plan.

`python bench/history.py [--backend sqlite|postgresql|both] [--rows 100000]`
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchlib import exit_on_signals, load_average, machine_summary

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/test"
BENCH_DATABASE = "bench_history"
REPEAT = 11
PAGES = {
    "first page": "/imports/",
    "filtered page": "/imports/?status=complete&environment=production",
    "deep page": "/imports/?page=1000",
}
PROJECTS = ["shop", "web", "mobile", "data", "ops"]
ENVIRONMENTS = ["production", "staging", "live", "test", "dev"]
STATUSES = [  # roughly what a year of imports ends as
    ("complete", 70),
    ("failed", 7),
    ("rejected", 6),
    ("cancelled", 4),
    ("expired", 3),
    ("unknown", 2),
    ("stopped", 2),
    ("draft", 2),
    ("in_progress", 1),
    ("queued", 1),
    ("validating", 1),
    ("pending_approval", 1),
]
FILE_STEMS = ["vip", "beta", "churn", "=cmd"]  # one that a spreadsheet would run, to be neutralised
FINAL = {"complete", "failed", "rejected", "cancelled", "expired", "unknown", "stopped"}


# --- the parent: one child process per database -------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child-database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_database_url:
        return child(args.child_database_url, args.rows)

    exit_on_signals()  # so a timeout's SIGTERM still drops the PostgreSQL database and stops the child
    print(f"# history — {machine_summary()}; load average {load_average()}", flush=True)
    failed = False
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
            failed |= run_child(f"sqlite:///{folder}/history.sqlite3", args.rows) != 0
    if args.backend in ("postgresql", "both"):
        server = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
        try:
            with postgres_database(server) as url:
                failed |= run_child(url, args.rows) != 0
        except ConnectionRefusedError as exc:
            print(f"PostgreSQL: SKIPPED — {exc}")
    return 1 if failed else 0


def run_child(database_url: str, rows: int) -> int:
    """Django is set up once per process and database, so each database gets a process of its own."""
    argv = [sys.executable, __file__, "--rows", str(rows), "--child-database-url", database_url]
    child_process = subprocess.Popen(argv, cwd=ROOT)  # noqa: S603
    try:
        return child_process.wait(timeout=1200)
    except subprocess.TimeoutExpired:
        print(f"history benchmark on {urlsplit(database_url).scheme} did not finish within 20 minutes")
        return 1
    finally:
        if child_process.poll() is None:  # a timeout, or this process was told to stop: stop the child
            child_process.terminate()  # lets it remove its temporary files
            try:
                child_process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child_process.kill()
                child_process.wait(timeout=5)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """Create `bench_history` on the server (dropping a leftover one), yield its URL, drop it."""
    import psycopg

    try:
        admin = psycopg.connect(server_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise ConnectionRefusedError(f"cannot reach {server_url}: {str(exc).strip()[:200]}") from None
    parts = urlsplit(server_url)
    url = urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {BENCH_DATABASE}")
        yield url
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        admin.close()


# --- the child: one database --------------------------------------------------------------------------


def child(database_url: str, rows: int) -> int:
    exit_on_signals()
    static = tempfile.mkdtemp(prefix="bench-history-static-")
    try:
        return measure_database(database_url, rows, static)
    finally:
        shutil.rmtree(static, ignore_errors=True)


def measure_database(database_url: str, rows: int, static: str) -> int:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DATABASE_URL=database_url,
        SECRET_KEY=secrets.token_urlsafe(40),
        ALLOWED_HOSTS="testserver",
        STATIC_ROOT=static,
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("DEBUG", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    vendor = connection.vendor
    version = database_version(connection)
    print(f"## {vendor} {version}", flush=True)

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.test import Client

    from segments_app.access import VIEWERS

    users = [get_user_model().objects.create_user(f"pm{n:02d}") for n in range(20)]
    # Viewers: an account in no role would be measured rendering the refusal page, not the history.
    Group.objects.get_or_create(name=VIEWERS)[0].user_set.add(*users)
    client = Client()
    client.force_login(users[0])
    rng = random.Random(20240415)  # noqa: S311 - reproducible test data

    small = 100
    create_records(users, small, rng)
    at_small = measure(client, connection)
    create_records(users, rows - small, rng)
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            # What autovacuum does soon after such a load (PostgreSQL 13+ vacuums insert-only tables
            # too): statistics for the planner and a visibility map for index-only scans.
            cursor.execute("VACUUM ANALYZE segments_app_importrecord")
    at_large = measure(client, connection)

    ok = report(vendor, small, rows, at_small, at_large, connection)
    print(f"{vendor}: {'all targets met' if ok else 'some targets missed (see above)'}", flush=True)
    connection.close()
    return 0


def database_version(connection: Any) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
        else:
            cursor.execute("SELECT sqlite_version()")
        return str(cursor.fetchone()[0]).split()[0]


@contextlib.contextmanager
def created_at_settable() -> Iterator[None]:
    """`created_at` is auto_now_add; the benchmark needs a year of dates, so lift that while it writes."""
    from segments_app.models import ImportRecord

    field = ImportRecord._meta.get_field("created_at")
    field.auto_now_add = False
    try:
        yield
    finally:
        field.auto_now_add = True


def create_records(users: list[Any], count: int, rng: random.Random) -> None:
    from django.utils import timezone

    from segments_app.models import ImportRecord

    now = timezone.now()
    statuses, weights = zip(*STATUSES, strict=True)
    batch: list[ImportRecord] = []
    started = time.perf_counter()
    with created_at_settable():
        for _ in range(count):
            status = rng.choices(statuses, weights)[0]
            created = now - timedelta(seconds=rng.uniform(60, 365 * 86400))
            keys = rng.choice([1_200, 15_000, 250_000, 1_000_000, 2_500_000])
            parts = -(-keys // 1_000_000)
            failed = status in {"failed", "rejected", "unknown", "stopped"}
            batch.append(
                ImportRecord(
                    user=rng.choice(users),
                    created_at=created,
                    finished_at=created + timedelta(seconds=rng.uniform(5, 900)) if status in FINAL else None,
                    project_key=rng.choice(PROJECTS),
                    environment_key=rng.choice(ENVIRONMENTS),
                    segment_key=f"segment-{rng.randrange(300):03d}",
                    original_filename=f"{rng.choice(FILE_STEMS)}-{rng.randrange(10**6)}.csv",
                    size_bytes=keys * 13,
                    sha256=hashlib.sha256(rng.randbytes(8)).hexdigest(),
                    mode=rng.choice(["merge", "merge", "replace"]),
                    wait_on_approvals=rng.random() < 0.1,
                    report=report_json(keys, parts, status == "rejected", rng),
                    key_count=keys if status != "rejected" else 0,
                    part_count=parts,
                    parts_done=parts if status == "complete" else 0,
                    status=status,
                    error_code="conflict" if failed and rng.random() < 0.3 else "",
                    error_message="LaunchDarkly refused the file: invalid request" if failed else "",
                    rows_read=keys,
                    bytes_read=keys * 13,
                )
            )
            if len(batch) == 2000:
                ImportRecord.objects.bulk_create(batch)
                batch.clear()
        if batch:
            ImportRecord.objects.bulk_create(batch)
    print(f"  (created {count:,} records in {time.perf_counter() - started:.1f} s)", flush=True)


def report_json(keys: int, parts: int, rejected: bool, rng: random.Random) -> dict[str, Any]:
    """What validation keeps on a record (`Report.to_json`): counts, sample keys, problems, part sizes."""
    problems = (
        [
            {"line": rng.randrange(1, keys), "message": "The key is longer than 512 characters."}
            for _ in range(20)
        ]
        if rejected
        else []
    )
    return {
        "rows_read": keys,
        "keys_accepted": 0 if rejected else keys,
        "duplicates": rng.randrange(100),
        "blank_rows": rng.randrange(10),
        "trimmed_keys": rng.randrange(10),
        "header_skipped": False,
        "extra_columns_rows": 0,
        "sample_keys": [f"user-{rng.randrange(10**7):07d}" for _ in range(5)],
        "problems": problems,
        "problem_count": len(problems),
        "header_suspected": "",
        "part_sizes": [
            {"keys": min(1_000_000, keys - n * 1_000_000), "bytes": 13_000_000} for n in range(parts)
        ],
    }


# --- measuring ----------------------------------------------------------------------------------------


def measure(client: Any, connection: Any) -> dict[str, dict[str, Any]]:
    from django.test.utils import CaptureQueriesContext

    results: dict[str, dict[str, Any]] = {}
    for name, path in PAGES.items():
        response = client.get(path)  # warm: templates, statements
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        with CaptureQueriesContext(connection) as queries:
            client.get(path)
        # Read now: the next request's request_started signal empties the connection's query log.
        captured = list(queries.captured_queries)
        times = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            response = client.get(path)
            response.content  # noqa: B018 - the whole page
            times.append(time.perf_counter() - started)
        results[name] = {
            # Best of 11: the machine may be shared, and the 100 and 100,000 runs are minutes apart.
            "time": min(times),
            "median": statistics.median(times),
            "queries": len(captured),
            "captured": captured,
            "path": path,
        }

    # The export: a timed pass, then a pass under tracemalloc for its peak memory.
    export = "/imports/export.csv"
    stream(client, export)  # warm
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        first, size, lines = stream(client, export)
        total = time.perf_counter() - started
    captured = list(queries.captured_queries)
    tracemalloc.start()
    stream(client, export)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["CSV export"] = {
        "time": total,
        "first_chunk": first - started,
        "bytes": size,
        "rows": lines - 1,
        "peak": peak,
        "queries": len(captured),
        "captured": captured,
        "path": export,
    }
    return results


def stream(client: Any, path: str) -> tuple[float, int, int]:
    """Read a streaming answer to its end: (when the first chunk came, bytes, lines)."""
    response = client.get(path)
    if response.status_code != 200 or not response.streaming:
        raise RuntimeError(f"{path} answered {response.status_code}, streaming={response.streaming}")
    first = 0.0
    size = lines = 0
    for chunk in response.streaming_content:
        if not first:
            first = time.perf_counter()
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    return first, size, lines


def report(
    vendor: str,
    small: int,
    large: int,
    at_small: dict[str, dict[str, Any]],
    at_large: dict[str, dict[str, Any]],
    connection: Any,
) -> bool:
    ok = True
    for name in [*PAGES, "CSV export"]:
        a, b = at_small[name], at_large[name]
        ratio = b["time"] / a["time"]
        if "median" in a:
            times = (
                f"{small:,} records {a['time'] * 1000:.1f} ms (median {a['median'] * 1000:.1f}), "
                f"{a['queries']} queries; {large:,} records {b['time'] * 1000:.1f} ms "
                f"(median {b['median'] * 1000:.1f}), {b['queries']} queries"
            )
        else:
            times = (
                f"{small:,} records {a['time'] * 1000:.1f} ms, {a['queries']} queries; "
                f"{large:,} records {b['time'] * 1000:.1f} ms, {b['queries']} queries"
            )
        line = f"{vendor} {name}: {times}; ratio {ratio:.1f}x"
        if name == "CSV export":
            # Built whole, the CSV would need at least its own size in memory; streamed, memory stays at
            # one fetch of rows (iterator chunk_size), whatever the number of rows.
            streams = b["first_chunk"] < b["time"] / 10 and b["peak"] < b["bytes"]
            line += (
                f"; {b['rows']:,} rows, {b['bytes'] / 1e6:.1f} MB in {b['time']:.2f} s "
                f"({b['rows'] / b['time']:,.0f} rows/s), first chunk after {b['first_chunk'] * 1000:.0f} ms, "
                f"peak memory {b['peak'] / 1e6:.1f} MB (tracemalloc; {a['peak'] / 1e6:.1f} MB with {small})"
                f" — streams: {'MET' if streams else 'MISSED'}"
                f"; same query count: {'MET' if a['queries'] == b['queries'] else 'MISSED'}"
            )
            ok &= streams
            print(line, flush=True)
            profile_export(b["path"])
            continue
        same = a["queries"] == b["queries"]
        fast = ratio <= 2.0
        ok &= same and fast
        line += f" — same query count {'MET' if same else 'MISSED'}, ≤ 2x time {'MET' if fast else 'MISSED'}"
        print(line, flush=True)
        if not fast:
            explain_slowest(b["captured"], connection)
    return ok


def profile_export(path: str) -> None:
    """Where an export's time goes: the functions with the most own time, under cProfile."""
    import cProfile
    import pstats

    from django.test import Client

    from segments_app.models import ImportRecord

    client = Client()
    client.force_login(ImportRecord.objects.order_by("pk").first().user)
    profiler = cProfile.Profile()
    profiler.enable()
    stream(client, path)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    top = []
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in rows[:8]:
        where = Path(filename).name if filename != "~" else "builtin"
        top.append(f"{function} ({where}) {own / total:.0%}")
    print(f"    export profile (own time, cProfile): {'; '.join(top)}")


def explain_slowest(captured: list[dict[str, Any]], connection: Any) -> None:
    """Print the slowest queries of a page and the plan of the slowest, to say what limits it."""
    ranked = sorted(captured, key=lambda q: float(q.get("time") or 0), reverse=True)
    for query in ranked[:2]:
        print(f"    {float(query['time']) * 1000:.1f} ms: {shorten(query['sql'])}")
    slowest = ranked[0]["sql"]
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    try:
        with connection.cursor() as cursor:
            cursor.execute(prefix + slowest)
            plan = [" | ".join(str(c) for c in row) for row in cursor.fetchall()]
    except Exception as exc:  # a plan is a diagnostic; never fail the benchmark on it
        plan = [f"(no plan: {exc})"]
    for row in plan[:12]:
        print(f"      plan: {row}")


def shorten(sql: str, limit: int = 230) -> str:
    sql = " ".join(sql.split())
    if 'FROM "segments_app_importrecord"' in sql and sql.startswith('SELECT "segments_app_importrecord"'):
        sql = "SELECT <record and user columns> " + sql[sql.index('FROM "segments_app_importrecord"') :]
    return sql if len(sql) <= limit else sql[: limit - 1] + "…"


if __name__ == "__main__":
    raise SystemExit(main())
