"""Upload path benchmark: a CSV of N keys from the browser's POST to the last byte at LaunchDarkly.

For each size (100k, 1M, 3M keys; files `user-0000001`… one per line) it runs the product as deployed —
gunicorn (2 processes of 8 threads) and `manage.py import_worker`, fresh for each size — against a
fresh SQLite database, with LaunchDarkly replaced by `bench/standin.py` on loopback. It measures:

- the upload POST (multipart, logged-in session, CSRF token) until its answer, and how long after the
  last byte of the body was handed to the socket the answer came;
- the whole path: from the start of the POST until the stand-in has received the last byte of the
  last part (upload + the worker's pickup + validation + submission, and for more than 1M keys the
  status polls between parts);
- the floor, in the same run: 2 x `curl -s -F file=@path <stand-in>/…/imports` + one bare
  `for row in csv.reader(open(path, newline="")): pass`;
- peak RSS growth (VmHWM after minus idle VmRSS before, with VmHWM reset at idle) of the gunicorn
  worker processes and of the import worker.

Targets: total ≤ 2x the floor at 1M; RSS growth of web and worker each ≤ 64 MB at 1M and 3M; the
answer comes a constant time after the last byte, whatever the size.

`python bench/upload_path.py [--sizes 100000,1000000,3000000]`
"""

from __future__ import annotations

import argparse
import csv
import math
import secrets
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from benchlib import (
    DeadlineExceeded,
    PeakRss,
    Processes,
    children,
    exit_on_signals,
    free_port,
    load_average,
    login,
    machine_summary,
    mb,
    prepare_site,
    site_env,
    start_gunicorn,
    start_standin,
    start_worker,
    verdict,
    wait_until,
    workdir,
)

PROJECT, ENVIRONMENT = "shop", "live"
PART_MAX_KEYS = 1_000_000  # the product's default IMPORT_PART_MAX_KEYS
RSS_LIMIT_KB = 64 * 1024
FINAL = ("complete", "failed", "unknown", "stopped", "rejected", "cancelled", "expired")


def label(keys: int) -> str:
    return f"{keys // 1_000_000}M" if keys >= 1_000_000 and keys % 1_000_000 == 0 else f"{keys // 1000}k"


def write_keys(path: Path, keys: int) -> None:
    with path.open("w", newline="") as out:
        batch = 100_000
        for start in range(1, keys + 1, batch):
            out.write("".join(f"user-{n:07d}\n" for n in range(start, min(keys, start + batch - 1) + 1)))


# --- the floor ----------------------------------------------------------------------------------------


def curl_upload(url: str, path: Path) -> float:
    """`curl -s -F file=@path url`; its own time_total (s)."""
    result = subprocess.run(  # noqa: S603
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-F", f"file=@{path}", url],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    status, seconds = result.stdout.split()
    if status != "204":
        raise RuntimeError(f"curl to the stand-in answered {status}")
    return float(seconds)


def csv_pass(path: Path) -> float:
    started = time.perf_counter()
    with path.open(newline="") as handle:
        for _row in csv.reader(handle):
            pass
    return time.perf_counter() - started


# --- the browser's upload -----------------------------------------------------------------------------


@dataclass
class Posted:
    started: float  # wall clock, s
    body_sent: float
    answered: float
    status: int
    location: str

    @property
    def answer_seconds(self) -> float:
        return self.answered - self.started

    @property
    def after_last_byte(self) -> float:
        return self.answered - self.body_sent


def post_upload(
    port: int, path_url: str, cookies: dict[str, str], fields: list[tuple[str, str]], file: Path
) -> Posted:
    """A browser's multipart POST: fields, then the file (sent with sendfile), then the rest.

    A small send buffer keeps 'body handed to the socket' close to 'body received by the server'."""
    boundary = "----benchBoundary" + secrets.token_hex(12)
    before = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields[:1]
    )
    before += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    )
    after = "\r\n" + "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields[1:]
    )
    after += f"--{boundary}--\r\n"
    head_bytes, tail_bytes = before.encode(), after.encode()
    length = len(head_bytes) + file.stat().st_size + len(tail_bytes)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    request = (
        f"POST {path_url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
        f"Referer: http://127.0.0.1:{port}{path_url}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        started = time.time()
        sock.sendall(request + head_bytes)
        with file.open("rb") as handle:
            sock.sendfile(handle)
        sock.sendall(tail_bytes)
        body_sent = time.time()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        answered = time.time()
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1]) if head and len(head[0].split()) > 1 else 0
    location = next(
        (line.split(":", 1)[1].strip() for line in head[1:] if line.lower().startswith("location:")), ""
    )
    return Posted(started, body_sent, answered, status, location)


# --- following the import in the database ---------------------------------------------------------


def _utc(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


class Watch:
    """Reads the import's row from the SQLite file (read-only, every 20 ms) to see when the worker
    picked it up; after the run, its timeline events."""

    def __init__(self, database: Path, pk: int) -> None:
        self.database, self.pk = database, pk
        self.picked_up: float | None = None
        self.status = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=20)

    def _run(self) -> None:
        db = self._connect()
        try:
            while not self._stop.wait(0.02):
                row = db.execute(
                    "SELECT status, lease_owner FROM segments_app_importrecord WHERE id = ?", (self.pk,)
                ).fetchone()
                if row is None:
                    continue
                self.status = row[0]
                if self.picked_up is None and row[1]:
                    self.picked_up = time.time()
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def events(self) -> list[tuple[float, str, str]]:
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT at, status, message FROM segments_app_importevent"
                " WHERE record_id = ? ORDER BY at, id",
                (self.pk,),
            ).fetchall()
        finally:
            db.close()
        return [(_utc(at), status, message) for at, status, message in rows]


# --- one size -----------------------------------------------------------------------------------------


@dataclass
class Run:
    """One upload of the file, from the POST to the last byte of the last part at LaunchDarkly."""

    floor_curl: list[float]
    floor_csv: float
    posted: Posted
    parts: list[dict[str, Any]]  # as the stand-in received them
    picked_up: float | None
    events: list[tuple[float, str, str]]

    @property
    def floor(self) -> float:
        return sum(self.floor_curl) + self.floor_csv

    @property
    def total(self) -> float:
        return max(p["finished"] for p in self.parts) - self.posted.started

    @property
    def pickup_wait(self) -> float:
        """From the answer until the worker claimed the import (it looks for due work every second)."""
        return max(0.0, (self.picked_up or self.posted.answered) - self.posted.answered)

    @property
    def part_waits(self) -> float:
        """Between parts: waiting for LaunchDarkly's status poll to report the previous part finished."""
        return sum(b["started"] - a["finished"] for a, b in zip(self.parts, self.parts[1:], strict=False))

    def timeline(self) -> str:
        t0 = self.posted.started
        steps = [f"answered {self.posted.answer_seconds:.2f} s"]
        if self.picked_up:
            steps.append(f"worker picked it up {self.picked_up - t0:.2f} s")
        for at, status, _message in self.events:
            if status == "queued":
                steps.append(f"checked {at - t0:.2f} s")
        for n, part in enumerate(self.parts, start=1):
            steps.append(f"part {n} at LaunchDarkly {part['started'] - t0:.2f}–{part['finished'] - t0:.2f} s")
        return "; ".join(steps)


@dataclass
class Result:
    keys: int
    size_bytes: int
    runs: list[Run]
    web_growth_kb: int
    worker_growth_kb: int
    memory_note: str = ""

    @property
    def median_run(self) -> Run:
        return sorted(self.runs, key=lambda r: r.total)[len(self.runs) // 2]

    @property
    def floor(self) -> float:
        return statistics.median(r.floor for r in self.runs)

    @property
    def total(self) -> float:
        return statistics.median(r.total for r in self.runs)

    @property
    def ratio(self) -> float:
        return self.total / self.floor

    @property
    def answer(self) -> float:
        return statistics.median(r.posted.answer_seconds for r in self.runs)

    @property
    def after_last_byte(self) -> float:
        return statistics.median(r.posted.after_last_byte for r in self.runs)

    def lines(self) -> list[str]:
        run = self.median_run
        waits = run.pickup_wait + run.part_waits
        without = (run.total - waits) / self.floor
        why = f"the worker's pickup wait {run.pickup_wait:.2f} s"
        if run.part_waits:
            why += f" and waits for LaunchDarkly to finish earlier parts {run.part_waits:.2f} s"
        curls = statistics.median(sum(r.floor_curl) for r in self.runs)
        totals = ", ".join(f"{r.total:.2f}" for r in self.runs)
        return [
            f"upload path {label(self.keys)} keys: {self.ratio:.2f}x floor (total {self.total:.2f} s; "
            f"floor {self.floor:.2f} s = 2 curl {curls:.2f} s "
            f"+ csv.reader {statistics.median(r.floor_csv for r in self.runs):.2f} s); "
            f"upload answered in {self.answer:.2f} s; "
            f"web peak RSS {mb(self.web_growth_kb)}, worker {mb(self.worker_growth_kb)}",
            f"  medians of {len(self.runs)} runs (totals {totals} s); "
            f"the median run without {why}: {without:.2f}x floor",
            f"  median run: {run.timeline()}",
            f"  {len(run.parts)} part(s), {sum(p['keys'] for p in run.parts):,} keys received; "
            f"memory: {self.memory_note}",
        ]


class Site:
    """gunicorn and the import worker, started fresh for one size, with a logged-in browser session."""

    def __init__(self, procs: Processes, env: dict[str, str], standin_port: int, work: Path) -> None:
        self.procs, self.env, self.work = procs, env, work
        self.standin = f"http://127.0.0.1:{standin_port}"
        self.database = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
        self.port = free_port()
        self.web = start_gunicorn(procs, env, self.port)
        self.worker = start_worker(procs, env)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = login(self.base)

    def stop(self) -> None:
        self.procs.stop(self.worker)
        self.procs.stop(self.web)

    def upload(self, path: Path, environment: str, segment: str) -> tuple[Posted, int]:
        """Open the upload form (as a browser would, for its CSRF token), then POST the file."""
        form_path = f"/segments/{PROJECT}/{environment}/{segment}/imports/new/"
        self.session.get(self.base + form_path, timeout=60).raise_for_status()
        fields = [
            ("csrfmiddlewaretoken", self.session.cookies["csrftoken"]),
            ("mode", "merge"),
            ("action", "upload"),
            ("submission_token", secrets.token_hex(16)),
        ]
        posted = post_upload(self.port, form_path, self.session.cookies.get_dict(), fields, path)
        if posted.status != 302 or "/imports/" not in posted.location:
            raise RuntimeError(f"upload answered {posted.status} {posted.location!r}")
        return posted, int(posted.location.rstrip("/").rsplit("/", 1)[1])

    def final_status(self, pk: int) -> str:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=20) as db:
            row = db.execute("SELECT status FROM segments_app_importrecord WHERE id = ?", (pk,)).fetchone()
        return row[0] if row and row[0] in FINAL else ""

    def wait_final(self, pk: int, timeout: float, what: str) -> str:
        try:
            return wait_until(
                lambda: self.procs.check_alive() or self.final_status(pk), timeout=timeout, what=what
            )
        except DeadlineExceeded as exc:
            raise DeadlineExceeded(f"{exc}\n--- import worker log (tail) ---\n{self.worker_log()}") from None

    def worker_log(self) -> str:
        return self.procs.current_log("import_worker").read_text(errors="replace")[-4000:]

    def warm_up(self) -> None:
        """Small uploads through the whole path (in two environments at once, so they need not queue
        behind each other), so both gunicorn processes and the worker have loaded everything an
        upload uses before their idle RSS is read."""
        warm = self.work / "warm-1k.csv"
        if not warm.exists():
            write_keys(warm, 1000)
        pks = [self.upload(warm, ("live", "test")[n % 2], "warm-up")[1] for n in range(6)]
        for pk in pks:
            self.wait_final(pk, 120, "a warm-up import to finish")
        time.sleep(0.5)

    def stand_in_imports(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.standin}/_bench/stats", timeout=10).json()["imports"]

    def one_run(self, keys: int, file: Path, segment: str) -> Run:
        floor_url = f"{self.standin}/api/v2/segments/{PROJECT}/{ENVIRONMENT}/floor/imports"
        floor_curl = [curl_upload(floor_url, file), curl_upload(floor_url, file)]
        floor_csv = csv_pass(file)

        before = len(self.stand_in_imports())
        posted, pk = self.upload(file, ENVIRONMENT, segment)
        watch = Watch(self.database, pk)
        parts = math.ceil(keys / PART_MAX_KEYS)
        try:

            def delivered() -> list[dict[str, Any]] | None:
                self.procs.check_alive()
                mine = [i for i in self.stand_in_imports()[before:] if i["segment"].endswith(f"/{segment}")]
                if len(mine) >= parts and sum(i["keys"] for i in mine) >= keys:
                    return mine
                if watch.status in FINAL and watch.status != "complete":
                    raise RuntimeError(f"import {pk} ended {watch.status}:\n{self.worker_log()}")
                return None

            try:
                received = wait_until(
                    delivered, timeout=600, what=f"{parts} part(s) of {keys:,} keys at the stand-in"
                )
            except DeadlineExceeded as exc:
                raise DeadlineExceeded(
                    f"{exc}\n--- import worker log (tail) ---\n{self.worker_log()}"
                ) from None
            status = self.wait_final(pk, 120, "the import to be recorded final")
        finally:
            watch.stop()
        if status != "complete":
            raise RuntimeError(f"import {pk} ended {status}")
        return Run(floor_curl, floor_csv, posted, received, watch.picked_up, watch.events())


def run_size(
    keys: int,
    file: Path,
    *,
    repeat: int,
    work: Path,
    procs: Processes,
    env: dict[str, str],
    standin_port: int,
) -> Result:
    # Fresh server processes for each size, so one size's heap does not hide the next one's growth.
    site = Site(procs, env, standin_port, work)
    try:
        site.warm_up()
        web_pids = children(site.web.pid)
        memory = PeakRss([*web_pids, site.worker.pid])
        runs = [site.one_run(keys, file, f"bench-{label(keys).lower()}") for _ in range(repeat)]
        growth = memory.growth_kb()
        return Result(
            keys=keys,
            size_bytes=file.stat().st_size,
            runs=runs,
            web_growth_kb=max(growth[pid] for pid in web_pids),
            worker_growth_kb=growth[site.worker.pid],
            memory_note=memory.describe(),
        )
    finally:
        site.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000,3000000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (medians are reported)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    exit_on_signals()
    print(f"# upload path — {machine_summary()}; load average {load_average()}", flush=True)
    results: list[Result] = []
    with workdir("bench-upload-") as work, Processes(work / "logs") as procs:
        standin_port = free_port()
        env = site_env(work, standin_port=standin_port)
        prepare_site(env)
        start_standin(procs, standin_port)
        for keys in sizes:
            file = work / f"keys-{label(keys)}.csv"
            write_keys(file, keys)
            result = run_size(
                keys, file, repeat=args.repeat, work=work, procs=procs, env=env, standin_port=standin_port
            )
            results.append(result)
            print("\n".join(result.lines()), flush=True)
            file.unlink()

    print(
        "upload answer vs file size (medians; 'after the last byte': from handing over the body's last byte):"
    )
    for r in results:
        curl = statistics.median(run.floor_curl[0] for run in r.runs)
        print(
            f"  {label(r.keys):>4} {r.size_bytes / 1e6:6.1f} MB: answered in {r.answer:.3f} s "
            f"({r.size_bytes / 1e6 / r.answer:.0f} MB/s; one curl of the file to the stand-in {curl:.3f} s), "
            f"{r.after_last_byte * 1000:.0f} ms after the last byte"
        )

    ok = True
    by_keys = {r.keys: r for r in results}
    print("targets:")
    if 1_000_000 in by_keys:
        r = by_keys[1_000_000]
        met = r.ratio <= 2.0
        ok &= met
        print(f"  1M total ≤ 2x floor: {r.ratio:.2f}x — {verdict(met)}")
    for keys in (1_000_000, 3_000_000):
        if keys in by_keys:
            r = by_keys[keys]
            met = r.web_growth_kb <= RSS_LIMIT_KB and r.worker_growth_kb <= RSS_LIMIT_KB
            ok &= met
            print(
                f"  {label(keys)} RSS growth ≤ 64 MB: web {mb(r.web_growth_kb)}, "
                f"worker {mb(r.worker_growth_kb)} — {verdict(met)}"
            )
    if len(results) > 1:
        first, last = results[0], results[-1]
        met = last.after_last_byte <= first.after_last_byte + 0.05
        ok &= met
        print(
            "  the answer does not grow with size beyond receiving the bytes: "
            f"{first.after_last_byte * 1000:.0f} ms after the last byte at {label(first.keys)}, "
            f"{last.after_last_byte * 1000:.0f} ms at {label(last.keys)} — {verdict(met)}"
        )
    print("all targets met" if ok else "some targets missed (see above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
