"""Polling benchmark: 200 people watching 50 running imports, and what it costs LaunchDarkly.

50 imports are running at LaunchDarkly (one part each, `in_progress`, due now) in a fresh SQLite
database; the stand-in (`bench/standin.py`) keeps answering `in_progress` and counts its status GETs per
import. gunicorn (2 processes of 8 threads) and one `manage.py import_worker` run with
IMPORT_POLL_SECONDS=2. For 30 s, 200 viewers (asyncio, each with a logged-in session of its own) poll
like htmx does, every 2 s each: the detail page's fragment of a random import (`GET /imports/<pk>/`
with `HX-Request: true`) and the history table's one poll (`GET /imports/statuses/?id=…` for all 50, the
address the history page gives htmx, `shown` tokens included).
A probe asks `GET /healthz` ten times a second meanwhile: its latency is the baseline (what any request
costs on this machine under this load).

Reports LaunchDarkly status calls per import per poll interval (target ≤ 1), latency p50/p95/p99 of the
fragment and the table poll (target p95 ≤ 50 ms), errors (target 0), the /healthz baseline, and the CPU
each process used (what limits latency on a small machine).

`python bench/polling.py [--viewers 200] [--seconds 30]`
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import os
import random
import re
import statistics
import time
from collections import defaultdict
from typing import Any

import requests
from benchlib import (
    Processes,
    children,
    cpu_seconds,
    exit_on_signals,
    free_port,
    load_average,
    machine_busy_seconds,
    machine_summary,
    percentile,
    prepare_site,
    site_env,
    start_gunicorn,
    start_standin,
    start_worker,
    verdict,
    workdir,
)

IMPORTS = 50
POLL_SECONDS = 2.0
REQUEST_TIMEOUT = 10.0
P95_TARGET_MS = 50.0


def seed(env: dict[str, str], viewers: int) -> tuple[list[int], list[str]]:
    """The 50 running imports and one logged-in session per viewer, written straight to the database."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django.utils import timezone

    from segments_app.access import VIEWERS
    from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus

    # Viewers, as the people watching imports are: an account in no role is refused every page.
    viewer_group, _ = Group.objects.get_or_create(name=VIEWERS)
    users = [get_user_model().objects.create_user(f"viewer{n:02d}") for n in range(10)]
    viewer_group.user_set.add(*users)
    now = timezone.now()
    pks = []
    for n in range(IMPORTS):
        record = ImportRecord.objects.create(
            user=users[n % len(users)],
            project_key="shop",
            environment_key=("live", "test")[n % 2],
            segment_key=f"segment-{n:02d}",
            original_filename=f"keys-{n:02d}.csv",
            size_bytes=13_000_000,
            sha256="0" * 64,
            mode="merge",
            key_count=1_000_000,
            part_count=1,
            status=ImportStatus.IN_PROGRESS,
            next_attempt_at=now,
            last_checked_at=now,
        )
        ImportPart.objects.create(
            record=record,
            number=1,
            key_count=1_000_000,
            size_bytes=13_000_000,
            mode="merge",
            status=ImportStatus.IN_PROGRESS,
            ld_import_id=f"ld-{record.pk}",
            submitted_at=now,
        )
        for status, message in [
            (ImportStatus.VALIDATING, "Received keys.csv (13,000,000 bytes) to check and send."),
            (ImportStatus.QUEUED, "Checked keys.csv: 1,000,000 keys, merge."),
            (ImportStatus.SUBMITTING, "Sending the file to LaunchDarkly."),
            (ImportStatus.PREPARING, f"LaunchDarkly accepted the file (import ID ld-{record.pk})."),
            (ImportStatus.IN_PROGRESS, "The file: Importing."),
        ]:
            ImportEvent.objects.create(record=record, status=status, message=message)
        pks.append(record.pk)
    sessions = []
    for n in range(viewers):
        user = users[n % len(users)]
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append(store.session_key)
    connection.close()
    return pks, sessions


POLL_PATHS: dict[int, str] = {}
POLLER = b'id="import-poller"'  # in every answer to a table poll, whatever rows it re-sends


def page_poll_path(port: int, session: str) -> str:
    """The table poll's address as the history page writes it for htmx."""
    page = requests.get(f"http://127.0.0.1:{port}/imports/", cookies={"sessionid": session}, timeout=30).text
    found = re.search(r'id="import-poller" hx-get="([^"]+)"', page)
    if found is None:
        raise SystemExit("the history page has no table poll: did the seed make running imports?")
    return html.unescape(found.group(1))


class Load:
    def __init__(self, port: int, pks: list[int], sessions: list[str], seconds: float) -> None:
        self.port, self.pks, self.sessions, self.seconds = port, pks, sessions, seconds
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        # What htmx asks: the poll address the history page gives (each running row's id, the status it
        # shows and its `shown` token), fetched once; nothing changes during the load, so it stays valid.
        every_row = "/imports/statuses/?" + "&".join(f"id={pk}" for pk in pks)
        self.statuses_path = POLL_PATHS.get(port) or every_row

    async def get(self, kind: str, path: str, session: str | None, *, htmx: bool, marker: bytes) -> None:
        headers = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n"
        if session:
            headers += f"Cookie: sessionid={session}\r\n"
        if htmx:
            headers += "HX-Request: true\r\nHX-Current-URL: http://127.0.0.1/imports/\r\n"
        started = time.perf_counter()
        writer = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write((headers + "\r\n").encode())
                await writer.drain()
                answer = await reader.read()
        except (OSError, TimeoutError) as exc:
            self.errors[kind].append(type(exc).__name__)
            return
        finally:
            if writer is not None:
                writer.close()
        elapsed = time.perf_counter() - started
        status = answer[9:12]
        if status != b"200":
            self.errors[kind].append(f"HTTP {status.decode(errors='replace')}")
        elif marker not in answer:
            self.errors[kind].append("unexpected page")
        else:
            self.latencies[kind].append(elapsed)

    async def every(self, period: float, end: float, request: Any) -> None:
        """Call `request()` every `period` seconds (from a random phase) until `end`, like htmx's poll."""
        next_at = time.monotonic() + random.uniform(0, period)  # noqa: S311 - load spread, not secrets
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if time.monotonic() >= end:
                return
            await request()
            next_at += period

    async def run(self) -> None:
        end = time.monotonic() + self.seconds
        tasks = []
        for session in self.sessions:

            async def fragment(session: str = session) -> None:
                pk = random.choice(self.pks)  # noqa: S311
                await self.get("fragment", f"/imports/{pk}/", session, htmx=True, marker=b'id="import-live"')

            async def table(session: str = session) -> None:
                await self.get("statuses", self.statuses_path, session, htmx=True, marker=POLLER)

            tasks.append(self.every(POLL_SECONDS, end, fragment))
            tasks.append(self.every(POLL_SECONDS, end, table))

        async def healthz() -> None:
            await self.get("healthz", "/healthz", None, htmx=False, marker=b'"ok"')

        tasks.append(self.every(0.1, end, healthz))
        await asyncio.gather(*tasks)


def summary(kind: str, values: list[float], errors: list[str]) -> str:
    ms = [v * 1000 for v in values]
    if not ms:
        return f"{kind}: no successful requests; errors {len(errors)}"
    return (
        f"{kind}: {len(ms)} ok, p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.0f} ms; errors {len(errors)}"
        + (f" ({', '.join(sorted(set(errors)))})" if errors else "")
    )


def p95_ms(values: list[float]) -> float:
    return percentile(values, 95) * 1000 if values else float("inf")


class Bench:
    """The running site and a way to put a load on it and measure what it did."""

    def __init__(
        self, procs: Processes, web_port: int, standin_port: int, pks: list[int], sessions: list[str]
    ):
        self.procs, self.web_port, self.pks, self.sessions = procs, web_port, pks, sessions
        self.stats_url = f"http://127.0.0.1:{standin_port}/_bench/stats"
        web = next(p for name, p in procs.started if name == "gunicorn")
        worker = next(p for name, p in procs.started if name == "import_worker")
        standin = next(p for name, p in procs.started if name == "standin")
        self.pids = {
            "gunicorn": [web.pid, *children(web.pid)],
            "import_worker": [worker.pid],
            "stand-in": [standin.pid],
            "load generator": [os.getpid()],
        }

    def unloaded(self, count: int = 100) -> dict[str, float]:
        """p50 latency of each request alone (one at a time, no other load): its own service time."""
        load = Load(self.web_port, self.pks, self.sessions[:1], 0)
        session = self.sessions[0]

        async def one_at_a_time() -> None:
            for n in range(count):
                pk = self.pks[n % len(self.pks)]
                await load.get("fragment", f"/imports/{pk}/", session, htmx=True, marker=b'id="import-live"')
                await load.get("statuses", load.statuses_path, session, htmx=True, marker=POLLER)
                await load.get("healthz", "/healthz", None, htmx=False, marker=b'"ok"')

        asyncio.run(one_at_a_time())
        return {kind: percentile(values, 50) * 1000 for kind, values in load.latencies.items()}

    def measure(self, viewers: int, seconds: float) -> dict[str, Any]:
        cpu_before = {name: sum(cpu_seconds(p) for p in ps) for name, ps in self.pids.items()}
        busy_before = machine_busy_seconds()
        before = requests.get(self.stats_url, timeout=10).json()
        started = time.time()
        load = Load(self.web_port, self.pks, self.sessions[:viewers], seconds)
        asyncio.run(load.run())
        elapsed = time.time() - started
        after = requests.get(self.stats_url, timeout=10).json()
        cpu = {
            name: (sum(cpu_seconds(p) for p in ps) - cpu_before[name]) / elapsed
            for name, ps in self.pids.items()
        }
        # What everything else on the machine used meanwhile (other people's tests, say): noise.
        cpu["everything else"] = max(
            0.0, (machine_busy_seconds() - busy_before) / elapsed - sum(cpu.values())
        )
        self.procs.check_alive()
        # Per import: calls in the window, and the rate from the gaps between its calls (calls per poll
        # interval = interval / mean gap; counting calls in a window would round to whole calls).
        counts, per_import, gaps = [], [], []
        for pk in self.pks:
            name = f"ld-{pk}"
            counts.append(after["import_gets"].get(name, 0) - before["import_gets"].get(name, 0))
            times = [t for t in after["import_get_times"].get(name, []) if started <= t <= started + elapsed]
            own = [b - a for a, b in itertools.pairwise(times)]
            gaps += own
            per_import.append(POLL_SECONDS / statistics.mean(own) if own else 0.0)
        other = {
            k: v - before["requests"].get(k, 0) for k, v in after["requests"].items() if k != "GET import"
        }
        answered = sum(len(v) for v in load.latencies.values())
        return {
            "viewers": viewers,
            "elapsed": elapsed,
            "load": load,
            "rate": answered / elapsed,
            "cpu": cpu,
            "cpu_ms_per_request": cpu["gunicorn"] * elapsed / max(1, answered) * 1000,
            "per_import": per_import,
            "counts": counts,
            "gaps": gaps or [0.0],
            "other_calls": {k: v for k, v in other.items() if v},
            "errors": sum(len(v) for v in load.errors.values()),
            "p95": {kind: p95_ms(load.latencies[kind]) for kind in ("fragment", "statuses", "healthz")},
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--sweep", default="25,50,100,150", help="viewer counts measured for 10 s each first ('' for none)"
    )
    args = parser.parse_args()
    sweep = [int(n) for n in args.sweep.split(",") if n]
    exit_on_signals()
    print(f"# polling — {machine_summary()}; load average {load_average()}", flush=True)
    with workdir("bench-polling-") as work, Processes(work / "logs") as procs:
        standin_port, web_port = free_port(), free_port()
        env = site_env(work, standin_port=standin_port, IMPORT_POLL_SECONDS=f"{POLL_SECONDS:g}")
        prepare_site(env)
        pks, sessions = seed(env, max(args.viewers, *sweep) if sweep else args.viewers)
        start_standin(procs, standin_port, import_status="in_progress")
        start_gunicorn(procs, env, web_port)
        start_worker(procs, env)
        bench = Bench(procs, web_port, standin_port, pks, sessions)

        POLL_PATHS[web_port] = page_poll_path(web_port, sessions[0])
        # Warm up every gunicorn process and thread a little, then let the worker settle into its rhythm.
        asyncio.run(Load(web_port, pks, sessions[:20], 3.0).run())
        time.sleep(1.0)
        alone = bench.unloaded()
        print(
            "one request at a time (no load), p50: "
            + ", ".join(f"{kind} {value:.1f} ms" for kind, value in alone.items()),
            flush=True,
        )

        if sweep:
            print("latency by number of viewers (10 s each; each viewer polls both every 2 s):")
        for viewers in sweep:
            m = bench.measure(viewers, 10.0)
            print(
                f"  {viewers:>3} viewers: {m['rate']:.0f} requests/s, "
                f"p95 fragment {m['p95']['fragment']:.0f} ms, "
                f"statuses {m['p95']['statuses']:.0f} ms, /healthz {m['p95']['healthz']:.0f} ms; "
                f"errors {m['errors']}; gunicorn CPU {m['cpu']['gunicorn']:.2f} cores, "
                f"{m['cpu_ms_per_request']:.1f} ms per request; everything else on the machine "
                f"{m['cpu']['everything else']:.2f} cores",
                flush=True,
            )
        m = bench.measure(args.viewers, args.seconds)

    load, per_import, gaps, cpu = m["load"], m["per_import"], m["gaps"], m["cpu"]
    print(
        f"{args.viewers} viewers x 2 polls every {POLL_SECONDS:g} s for {m['elapsed']:.1f} s, "
        f"{IMPORTS} running imports; {m['rate']:.0f} requests/s answered "
        f"(offered {args.viewers * 2 / POLL_SECONDS:.0f}/s + /healthz 10/s)"
    )
    print(
        f"LaunchDarkly status calls per import per poll interval: mean {statistics.mean(per_import):.2f}, "
        f"max {max(per_import):.2f}, min {min(per_import):.2f} ({min(m['counts'])}–{max(m['counts'])} calls "
        f"each in {m['elapsed']:.0f} s); between two calls for one import: min {min(gaps):.2f} s, "
        f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s; "
        f"other LaunchDarkly calls during the load: {m['other_calls'] or 'none'}"
    )
    for kind in ("fragment", "statuses", "healthz"):
        print("  " + summary(kind, load.latencies[kind], load.errors[kind]))
    print(
        "CPU used during the load (cores, of 2): "
        + ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())
        + f"; gunicorn {m['cpu_ms_per_request']:.1f} ms CPU per request"
    )

    healthz = m["p95"]["healthz"]
    print("targets:")
    # The rate decides. Two calls for one import closer than half an interval would be a second poller
    # (a real duplicate); closer than one interval but not half is scheduling jitter: the next check is
    # due an interval after the worker decided on the previous one, which a busy CPU may have sent late.
    duplicate = min(gaps) < POLL_SECONDS / 2
    met = max(per_import) <= 1.0 and not duplicate
    jitter = ""
    if not duplicate and min(gaps) < POLL_SECONDS - 0.05:
        jitter = " (less than one interval: the previous call reached the stand-in late, not a second poller)"
    print(
        f"  LaunchDarkly calls ≤ 1 per import per poll interval: max {max(per_import):.2f}, "
        f"closest two calls {min(gaps):.2f} s apart{jitter} — {verdict(met)}"
    )
    for name in ("fragment", "statuses"):
        p95 = m["p95"][name]
        met = p95 <= P95_TARGET_MS
        gap = (
            ""
            if met
            else f" ({p95 - P95_TARGET_MS:.0f} ms over; {p95 / healthz:.1f}x the /healthz p95 baseline)"
        )
        print(f"  {name} p95 ≤ {P95_TARGET_MS:.0f} ms: {p95:.1f} ms{gap} — {verdict(met)}")
    print(f"  errors = 0: {m['errors']} — {verdict(m['errors'] == 0)}")
    print(f"  baseline: /healthz p95 under the same load {healthz:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
