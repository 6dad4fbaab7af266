"""What the send-time preview check (issue #14) costs: LaunchDarkly calls, and the time of its comparison.

    .venv/bin/python bench/send_check.py            # calls, then 1,000,000 x 1,000,000 members
    .venv/bin/python bench/send_check.py --quick    # calls, then 300,000 x 300,000 members

1. Calls. A replace import of 1,000 keys goes through the product in this process, as the worker runs
   it (`worker.run_once`, every scheduled step made due at once): checked into a draft, its impact
   preview exported and computed, then sent on that confirmed preview (`send_draft`), the undo copy
   exported, the check, the part sent and followed until the import is complete. LaunchDarkly is
   mocked with `responses` (bench/standin.py serves no exports), and every call from the send to the
   end is recorded. The same import runs twice in this run: once as it is, once with
   `preview.still_true` patched to answer True (the flow before issue #14, which already took the
   undo snapshot). Target: exactly the same calls, in number and kind — the check reads the undo
   copy, it asks LaunchDarkly nothing.

2. Time. `preview.still_true` on an import whose confirmed preview and undo copy each hold the same
   N members (the copy in another order, as a second export may list them), against the comparison
   the draft's preview already paid: `compare(parts, members)` of N keys against N members sharing
   half of them, as `preview.run_for` calls it. The two alternate over the same warm files (which goes
   first alternating too), best of 5. Target: the check ≤ 1.5x the preview's comparison in CPU time of
   this process: on two CPUs shared with other sessions, wall time mostly measures their load (it is
   printed beside it, with each round's). Peak RSS growth of each (VmHWM reset before it) is shown too.

Data are written by a child process into a temporary folder (this process stays small), on a
temporary SQLite database; all of it is deleted at the end. Exits non-zero if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from benchlib import load_average, machine_summary, reset_peak, rss, verdict, workdir

ROOT = Path(__file__).resolve().parents[1]
LD_BASE = "https://ld.bench.invalid"
FILES = "https://files.bench.invalid"
PROJECT, ENVIRONMENT = "shop", "live"
CALL_KEYS = 1_000  # the import of the call count (calls do not depend on its size up to one part)
TARGET_TIME_RATIO = 1.5
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
ROUNDS = 5


# --- data (written by a child process) ------------------------------------------------------------------


def uuid_lines(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random UUIDs as rows of a (count, 37) byte array, each ending in a line feed."""
    digits = HEX[rng.integers(0, 16, size=(count, 32), dtype=np.uint8)]
    rows = np.empty((count, 37), np.uint8)
    rows[:, [8, 13, 18, 23]] = ord("-")
    rows[:, 36] = ord("\n")
    columns = [*range(0, 8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36)]
    rows[:, columns] = digits
    return rows


def write_case(count: int, parts: Path, snapshots: Path) -> None:
    """The draft's part file of `count` keys; the preview's `count` members, half of them listed in
    the part; the undo copy: the very same members, in another order."""
    rng = np.random.default_rng(count)
    pool = uuid_lines(rng, count + count // 2)
    (parts / "part-001.csv").write_bytes(pool[rng.permutation(count)].tobytes())
    members = pool[count // 2 :]
    (snapshots / "preview.csv").write_bytes(members[rng.permutation(count)].tobytes())
    (snapshots / "undo.csv").write_bytes(members[rng.permutation(count)].tobytes())


def in_child(*args: str) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True)  # noqa: S603 - this interpreter, this file


# --- Django on a temporary database ---------------------------------------------------------------------


def setup_django(work: Path) -> None:
    for key in list(os.environ):
        if key.startswith(
            ("DJANGO_", "LD_", "SANDBOX_", "IMPORT_", "SNAPSHOT_", "UNDO_", "REDIS_")
        ) or key in {
            "DATABASE_URL",
            "SECRET_KEY",
            "DEBUG",
            "VAR_DIR",
            "STATIC_ROOT",
            "WAKEUP_BACKEND",
        }:
            del os.environ[key]
    os.environ.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        SECRET_KEY=secrets.token_urlsafe(40),
        VAR_DIR=str(work / "var"),
        STATIC_ROOT=str(work / "static"),
        IMPORT_STORAGE_DIR=str(work / "imports"),
        # A made-up token for the mocked LaunchDarkly, random: the client hides any text of it in
        # what it reads ("api-bench" would hide "bench" in every URL).
        LD_API_TOKEN="api-" + secrets.token_hex(16),
        LD_BASE_URL=LD_BASE,
        LD_MAX_RETRIES="0",
        IMPORT_PREVIEW_ENABLED="true",
        UNDO_SNAPSHOTS_ENABLED="true",
        LOG_LEVEL="WARNING",
    )
    (work / "var").mkdir()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


# --- 1. the calls from the send to the end ---------------------------------------------------------------


class MockedLaunchDarkly:
    """LaunchDarkly's answers for one big segment, every call recorded as (method, kind)."""

    def __init__(self, members: bytes) -> None:
        import responses

        self.members = members
        self.calls: list[tuple[str, str]] = []
        self.exports = 0
        self.imports = 0
        self.mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        segment = re.escape(f"{LD_BASE}/api/v2/segments/{PROJECT}/{ENVIRONMENT}/") + r"[^/?]+"
        routes: list[tuple[str, str, Callable[[Any], tuple[int, dict[str, str], bytes | str]]]] = [
            ("GET", re.escape(f"{LD_BASE}/api/v2/projects") + r"(\?.*)?$", self._projects),
            ("GET", segment + r"(\?.*)?$", self._segment),
            ("POST", segment + r"/exports$", self._start_export),
            ("GET", segment + r"/exports/[^/?]+$", self._export),
            ("GET", re.escape(f"{FILES}/exports/") + r"[^/?]+\.csv(\?.*)?$", self._file),
            ("POST", segment + r"/imports$", self._start_import),
            ("GET", segment + r"/imports/[^/?]+$", self._import),
        ]
        for method, pattern, answer in routes:
            self.mock.add_callback(method, re.compile(pattern), callback=answer)

    def __enter__(self) -> MockedLaunchDarkly:
        self.mock.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.mock.__exit__(*exc)

    def _json(self, kind: str, request: Any, body: Any, status: int = 200) -> tuple[int, dict[str, str], str]:
        import json

        self.calls.append((request.method, kind))
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _projects(self, request: Any) -> tuple[int, dict[str, str], str]:
        environments = [{"key": ENVIRONMENT, "name": "Live", "color": "00ff00"}]
        body = {"items": [{"key": PROJECT, "name": "Shop", "environments": {"items": environments}}]}
        return self._json("projects", request, {**body, "totalCount": 1})

    def _segment(self, request: Any) -> tuple[int, dict[str, str], str]:
        key = request.path_url.split("?")[0].rsplit("/", 1)[1]
        body = {
            "key": key,
            "name": key.upper(),
            "tags": [],
            "creationDate": 1,
            "lastModifiedDate": 1,
            "version": 1,
            "rules": [],
            "deleted": False,
            "generation": 1,
            "unbounded": True,
            "unboundedContextKind": "user",
            "_links": {},
            "_unboundedMetadata": {"includedCount": self.members.count(b"\n")},
            "_flags": [],
        }
        return self._json("segment", request, body)

    def _start_export(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.calls.append(("POST", "export"))
        self.exports += 1
        return 200, {"Location": f"{request.path_url.split('?')[0]}/e-{self.exports}"}, ""

    def _export(self, request: Any) -> tuple[int, dict[str, str], str]:
        path = request.path_url.split("?")[0]
        export_id = path.rsplit("/", 1)[1]
        body = {
            "id": export_id,
            "segmentKey": path.split("/")[-3],
            "creationTime": 1,
            "status": "complete",
            "sizeBytes": len(self.members),
            "size": f"{len(self.members)} B",
            "initiator": {"name": "Bench", "email": "bench@example.com"},
            "_links": {
                "self": {"href": path},
                "file": {"href": f"{FILES}/exports/{export_id}.csv?sig=bench", "type": "text/csv"},
            },
        }
        return self._json("export", request, body)

    def _file(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.calls.append(("GET", "export file"))
        return 200, {"Content-Type": "text/csv"}, self.members

    def _start_import(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.calls.append(("POST", "import"))
        self.imports += 1
        return 204, {"Location": f"{request.path_url.split('?')[0]}/imp-{self.imports}"}, ""

    def _import(self, request: Any) -> tuple[int, dict[str, str], str]:
        path = request.path_url.split("?")[0]
        body = {
            "id": path.rsplit("/", 1)[1],
            "segmentKey": path.split("/")[-3],
            "status": "complete",
            "mode": "replace",
            "creationTime": 1,
            "_links": {},
            "files": [],
        }
        return self._json("import", request, body)


def run_due(record_id: int, done: Callable[[Any], bool], *, what: str, steps: int = 100) -> Any:
    """Run the worker's steps (`worker.run_once`) until `done` holds for the import, then until nothing
    is left to do, so that no trailing call is missed. Whenever nothing is due, the clock is moved on
    to the next step scheduled (an import's or a snapshot's, in the order the worker would meet them;
    a draft's next_attempt_at is its expiry, never moved): the product's own order, without its waits."""
    from django.utils import timezone

    from segments_app.imports import worker
    from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus

    def fast_forward() -> bool:
        scheduled = [
            *MemberSnapshot.objects.filter(
                status__in=(SnapshotStatus.REQUESTED, SnapshotStatus.EXPORTING), next_attempt_at__isnull=False
            ),
            *ImportRecord.objects.filter(next_attempt_at__isnull=False).exclude(
                status__in={*FINAL, ImportStatus.DRAFT}
            ),
        ]
        if not scheduled:
            return False
        first = min(scheduled, key=lambda row: row.next_attempt_at)
        past = timezone.now() - timedelta(seconds=1)
        type(first).objects.filter(pk=first.pk).update(next_attempt_at=past)
        return True

    for _ in range(steps):
        record = ImportRecord.objects.get(pk=record_id)
        if done(record):
            for _ in range(steps):
                if not worker.run_once("bench-send-check") and not fast_forward():
                    return ImportRecord.objects.get(pk=record_id)
            raise RuntimeError(f"the worker was still busy after {what}")
        if not worker.run_once("bench-send-check") and not fast_forward():
            break
    events = list(record.events.values_list("message", flat=True))
    raise RuntimeError(f"gave up waiting for {what} (import #{record_id} is {record.status}: {events[-4:]})")


def one_import(user: Any, segment: str, keys: bytes, ld: MockedLaunchDarkly) -> list[tuple[str, str]]:
    """A replace import of `keys`, previewed, sent on its confirmed preview, run to its end. Returns
    the calls made from the send on."""
    from segments_app.imports import intake, pipeline, preview
    from segments_app.imports.intake import new_upload_path
    from segments_app.models import ImportStatus, MemberSnapshot

    path = new_upload_path()
    path.write_bytes(keys)
    record, _ = intake.record_upload(
        user=user,
        project=PROJECT,
        environment=ENVIRONMENT,
        segment=segment,
        upload=intake.ReceivedFile(path, "keys.csv", len(keys), hashlib.sha256(keys).hexdigest()),
        mode="replace",
        wait_on_approvals=False,
        has_header=False,
        send=False,
    )

    def previewed(record: Any) -> bool:
        shown = preview.state(record) if record.status == ImportStatus.DRAFT else None
        return shown is not None and shown.state == "ready"

    record = run_due(record.pk, previewed, what="the draft's preview")
    shown = preview.state(record)
    assert shown is not None
    assert shown.snapshot_id is not None
    confirmed = MemberSnapshot.objects.get(pk=shown.snapshot_id)
    start = len(ld.calls)
    sent = pipeline.send_draft(
        record, user, mode="replace", wait_on_approvals=False, confirmed_preview=confirmed
    )
    assert sent, "the draft could not be sent"
    record = run_due(record.pk, lambda r: r.status in FINAL, what="the import to end")
    if record.status != ImportStatus.COMPLETE:
        events = list(record.events.values_list("message", flat=True))
        raise RuntimeError(f"import #{record.pk} ended {record.status}: {events[-3:]}")
    return ld.calls[start:]


FINAL = {"complete", "failed", "unknown", "stopped", "rejected", "cancelled", "expired", "draft"}


def count_calls() -> bool:
    from django.contrib.auth import get_user_model

    from segments_app.imports import preview

    keys = b"".join(f"user-{n:07d}\n".encode() for n in range(CALL_KEYS))
    # The members: half of them listed in the import; the same at the preview and at the send.
    members = b"".join(f"user-{n:07d}\n".encode() for n in range(CALL_KEYS // 2, CALL_KEYS + CALL_KEYS // 2))
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", secrets.token_urlsafe(16))
    real = preview.still_true
    answers: list[bool] = []

    def checked(record: Any) -> bool:
        answers.append(real(record))
        return answers[-1]

    with MockedLaunchDarkly(members) as ld:
        with mock.patch.object(preview, "still_true", return_value=True):
            before = one_import(user, "vip-before", keys, ld)
        with mock.patch.object(preview, "still_true", checked):
            after = one_import(user, "vip-after", keys, ld)
    if answers != [True]:
        raise RuntimeError(f"preview.still_true answered {answers}, expected one True")
    same = before == after  # the same calls, of the same kinds, in the same order
    print(
        f"LaunchDarkly calls of a {CALL_KEYS:,}-key replace import, "
        "from the send on a confirmed preview to complete:"
    )
    print(f"  before issue #14 (still_true patched to True): {len(before)} calls: {describe(before)}")
    print(f"  with the check (still_true answered True once): {len(after)} calls: {describe(after)}")
    print(f"  in order, before: {' → '.join(f'{m} {k}' for m, k in before)}")
    print(f"  in order, after:  {' → '.join(f'{m} {k}' for m, k in after)}")
    extra, fewer = Counter(after) - Counter(before), Counter(before) - Counter(after)
    print(
        f"  calls the check adds: {sum(extra.values())}"
        + (f" ({describe(list(extra.elements()))})" if extra else "")
        + (f"; calls it drops: {describe(list(fewer.elements()))}" if fewer else "")
        + ("" if same or extra or fewer else "; the same calls in another order")
        + f" — {verdict(same)}"
    )
    return same


def describe(calls: list[tuple[str, str]]) -> str:
    counted = Counter(calls)
    return ", ".join(f"{n} x {method} {kind}" for (method, kind), n in sorted(counted.items()))


# --- 2. the time of the check ---------------------------------------------------------------------------


class Timing:
    """Wall and CPU seconds (this process, all its threads) and peak RSS growth (kB) of one call."""

    def __init__(self, call: Callable[[], Any]) -> None:
        pid = os.getpid()
        reset_peak(pid)  # VmHWM back to the RSS now, so the peak is this call's own
        idle = rss(pid)[0]
        wall, cpu = time.perf_counter(), time.process_time()
        self.result = call()
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        self.grown_kb = rss(pid)[1] - idle


@contextlib.contextmanager
def check_case(count: int, work: Path) -> Iterator[tuple[Callable[[], Any], Callable[[], Any]]]:
    """(the check, the preview's comparison) on `count` x `count` members, files written by a child."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from segments_app import snapshots
    from segments_app.imports import preview
    from segments_app.imports.compare import compare
    from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus

    storage = Path(tempfile.mkdtemp(prefix="bench-send-check-", dir=work / "imports"))
    folder = snapshots.snapshot_dir()
    in_child("--write", str(count), str(storage), str(folder))
    user = get_user_model().objects.get(username="bench")
    record = ImportRecord.objects.create(
        user=user,
        project_key=PROJECT,
        environment_key=ENVIRONMENT,
        segment_key="vip-timed",
        original_filename="keys.csv",
        size_bytes=(storage / "part-001.csv").stat().st_size,
        sha256="0" * 64,
        mode="replace",
        status=ImportStatus.QUEUED,
        key_count=count,
        part_count=1,
        storage_dir=str(storage),
    )

    def snapshot(name: str, purpose: str) -> MemberSnapshot:
        return MemberSnapshot.objects.create(
            project_key=PROJECT,
            environment_key=ENVIRONMENT,
            segment_key="vip-timed",
            requested_by=user,
            purpose=purpose,
            import_record=record,
            status=SnapshotStatus.READY,
            finished_at=timezone.now(),
            file_path=str(folder / name),
            member_count=count,
            size_bytes=(folder / name).stat().st_size,
        )

    confirmed = snapshot("preview.csv", MemberSnapshot.Purpose.PREVIEW)
    undo_copy = snapshot("undo.csv", MemberSnapshot.Purpose.UNDO)
    ImportRecord.objects.filter(pk=record.pk).update(confirmed_preview=confirmed, undo_snapshot=undo_copy)
    record = ImportRecord.objects.get(pk=record.pk)

    def the_check() -> bool:
        return preview.still_true(record)

    def the_preview() -> Any:
        # As preview.run_for calls it (without its progress writes to the database).
        with tempfile.TemporaryDirectory(dir=storage) as scratch:
            return compare(
                [storage / "part-001.csv"],
                folder / "preview.csv",
                mode="replace",
                samples=preview.SAMPLES,
                workdir=Path(scratch),
            )

    try:
        yield the_check, the_preview
    finally:
        for name in ("preview.csv", "undo.csv"):
            (folder / name).unlink(missing_ok=True)
        for path in storage.iterdir():
            path.unlink()
        storage.rmdir()


def time_check(count: int, work: Path) -> bool:
    with check_case(count, work) as (the_check, the_preview):
        checks: list[Timing] = []
        previews: list[Timing] = []
        for round_ in range(ROUNDS):
            # Alternating which goes first, so a change in the machine's load hits both alike.
            for which in (the_preview, the_check) if round_ % 2 == 0 else (the_check, the_preview):
                timing = Timing(which)
                if which is the_preview:
                    impact = timing.result
                    assert impact.add + impact.unchanged == count == impact.remove + impact.unchanged, impact
                    previews.append(timing)
                else:
                    if timing.result is not True:
                        raise RuntimeError("preview.still_true found the same members changed")
                    checks.append(timing)
    cpu_ratio = min(t.cpu for t in checks) / min(t.cpu for t in previews)
    wall_ratio = min(t.wall for t in checks) / min(t.wall for t in previews)
    met = cpu_ratio <= TARGET_TIME_RATIO
    print(
        f"the check (preview.still_true), {count:,} x {count:,} members, best of {ROUNDS} alternating rounds:"
    )
    for name, timings in (
        (f"preview's comparison compare(parts, members), {count:,} keys x {count:,} members", previews),
        ("preview.still_true, confirmed preview x undo copy", checks),
    ):
        print(
            f"  {name}: CPU {min(t.cpu for t in timings):.2f} s, wall {min(t.wall for t in timings):.2f} s "
            f"(wall rounds {', '.join(f'{t.wall:.2f}' for t in timings)}), "
            f"peak RSS +{max(t.grown_kb for t in timings) / 1024:.0f} MB"
        )
    print(f"  check / preview's comparison, wall: {wall_ratio:.2f}x (moves with the machine's load)")
    print(
        f"  check / preview's comparison, CPU: {cpu_ratio:.2f}x (≤ {TARGET_TIME_RATIO:g}x) — {verdict(met)}"
    )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="time the check on 300k x 300k members")
    parser.add_argument("--write", nargs=3, metavar=("COUNT", "PARTS", "SNAPSHOTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_case(int(args.write[0]), Path(args.write[1]), Path(args.write[2]))
        return 0
    print(f"# send-time preview check — {machine_summary()}; load average {load_average()}", flush=True)
    count = 300_000 if args.quick else 1_000_000
    with workdir("bench-send-check-") as work:
        setup_django(work)
        calls_met = count_calls()
        time_met = time_check(count, work)
    print(f"load average at the end: {load_average()}")
    print("all targets met" if calls_met and time_met else "some targets MISSED")
    return 0 if calls_met and time_met else 1


if __name__ == "__main__":
    sys.exit(main())
