"""The sandbox applies imports outside any request, in batches that each commit on their own.

These tests drive the applier by hand (no live server, no applier thread), so each step is observed;
`test_sandbox.py` covers the same loop running beside a live server, and the last test here runs it as
the real `manage.py sandbox_applier` process, killed and restarted in the middle of an import.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction

from sandbox import applier, imports
from sandbox.errors import ApiError
from sandbox.models import SandboxEnvironment, SandboxImport, SandboxMember, SandboxProject, SandboxSegment
from sandbox.seed import VIP_MEMBERS, seed
from tests.factories import visible

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def demo_account(settings: Any) -> None:
    seed(SandboxProject, SandboxEnvironment, SandboxSegment, SandboxMember)
    settings.SANDBOX_IMPORT_BASE_SECONDS = 0.0
    settings.SANDBOX_IMPORT_SECONDS_PER_1000_KEYS = 0.0


def segment(key: str = "vip-customers", environment: str = "production") -> SandboxSegment:
    return SandboxSegment.objects.get(key=key, environment__key=environment)


def start(
    keys: list[str], *, mode: str = "merge", key: str = "vip-customers", **options: Any
) -> SandboxImport:
    content = "".join(f"{k}\n" for k in keys).encode()
    return imports.start_import(
        segment(key),
        SimpleUploadedFile("keys.csv", content),
        mode=mode,
        wait_on_approvals=options.get("wait_on_approvals", False),
    )


def all_rows(key: str = "vip-customers") -> list[str]:
    return list(SandboxMember.objects.filter(segment=segment(key)).values_list("context_key", flat=True))


def status(record: SandboxImport) -> str:
    from sandbox.models import now_ms

    return SandboxImport.objects.get(pk=record.pk).status_at(now_ms())


def in_another_connection(work: Any) -> Any:
    """Run `work` in a thread of its own, so on a connection of its own: it sees only what is committed."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert errors == [], errors
    return result[0]


def drain(*, deadline_seconds: float = 120) -> None:
    """Run the applier's passes until nothing is left to do."""
    deadline = time.monotonic() + deadline_seconds
    while applier.run_once():
        assert time.monotonic() < deadline, "the applier never went idle"


# --- one batch, one transaction ---------------------------------------------------------------------------


def test_each_batch_commits_on_its_own_and_other_connections_read_and_write_between_batches(
    settings: Any,
) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 1000
    settings.SANDBOX_IMPORT_BASE_SECONDS = 3600  # the clock keeps it running while we look
    keys = [f"new-{i:05d}" for i in range(4500)]
    record = start(keys)
    staged = SandboxMember.objects.filter(segment=segment(), generation=record.generation)
    seen = []
    for step in range(1, 6):
        applied = applier.apply_batch(record.pk)
        assert applied is not None
        assert not connection.in_atomic_block
        # Another connection sees this batch committed, and can write while the import is half applied.
        seen.append(in_another_connection(staged.count))
        renamed = f"Demo project {step}"
        in_another_connection(
            lambda name=renamed: SandboxProject.objects.filter(key="demo").update(name=name)
        )
        assert status(record) == "preparing"  # the clock says an hour
        assert segment().included_count == 120
        assert visible() == set(VIP_MEMBERS)
    assert seen == [1000, 2000, 3000, 4000, 4500]
    assert SandboxImport.objects.get(pk=record.pk).applied_bytes == Path(record.keys_path).stat().st_size
    assert applier.apply_batch(record.pk).added_count == 4500  # past the end: nothing more is written
    assert staged.count() == 4500


def test_an_import_of_three_batches_takes_four_commits(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three batches and the switch, each committed on its own; nothing else writes."""
    settings.SANDBOX_APPLY_BATCH_KEYS = 1000
    record = start([f"k-{i}" for i in range(2500)])
    commits = []
    original = connection.commit

    def commit() -> None:
        commits.append(SandboxImport.objects.values_list("applied_bytes", "final_status").get(pk=record.pk))
        original()

    monkeypatch.setattr(connection, "commit", commit)
    assert applier.advance(record.pk)
    monkeypatch.undo()
    size = Path(record.keys_path).stat().st_size if Path(record.keys_path).exists() else None
    assert size is None  # the key file is deleted once the import is complete
    offsets = [offset for offset, _ in commits]
    assert len(commits) == 4
    assert offsets[0] < offsets[1] < offsets[2] == offsets[3]
    assert [final for _, final in commits] == ["", "", "", "complete"]
    assert status(record) == "complete"


# --- complete only when applied ------------------------------------------------------------------------------


def test_complete_only_after_every_batch_and_the_clock(settings: Any) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 100
    settings.SANDBOX_IMPORT_BASE_SECONDS = 3600
    record = start([f"late-{i}" for i in range(250)])
    assert applier.advance(record.pk)  # writes all three batches, but the clock is not up
    assert SandboxImport.objects.get(pk=record.pk).added_count == 250
    assert status(record) == "preparing"
    assert visible() == set(VIP_MEMBERS)
    assert not applier.switch(record.pk)
    assert status(record) == "preparing"
    settings.SANDBOX_IMPORT_BASE_SECONDS = 0
    # A switch refuses an import whose keys are not all written yet.
    SandboxImport.objects.filter(pk=record.pk).update(applied_bytes=10)
    assert not applier.switch(record.pk)
    assert status(record) == "in_progress"
    SandboxImport.objects.filter(pk=record.pk).update(applied_bytes=Path(record.keys_path).stat().st_size)
    assert applier.advance(record.pk)
    assert status(record) == "complete"
    assert visible() == set(VIP_MEMBERS) | {f"late-{i}" for i in range(250)}
    assert segment().included_count == 370
    assert not Path(record.keys_path).exists()


def test_an_import_whose_time_is_up_but_not_applied_still_blocks_its_environment(settings: Any) -> None:
    record = start(["a"])
    assert status(record) == "in_progress"
    with pytest.raises(ApiError) as caught:
        start(["b"], key="churn-risk")
    assert caught.value.status == 409
    drain()
    assert status(record) == "complete"
    assert start(["b"], key="churn-risk")


def test_pending_approval_is_not_applied_until_approved() -> None:
    record = start(["waiting-1"], wait_on_approvals=True)
    drain()
    assert status(record) == "pending_approval"
    assert not SandboxMember.objects.filter(context_key="waiting-1").exists()
    assert imports.approve(record.pk)
    drain()
    assert status(record) == "complete"
    assert "waiting-1" in visible()


# --- replace and merge are exact ----------------------------------------------------------------------------


def test_replace_is_exact_and_hides_the_old_members_at_the_switch(settings: Any) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 7
    old_kept = VIP_MEMBERS[:5]
    keys = [*old_kept, *(f"fresh-{i}" for i in range(30)), "fresh-3", VIP_MEMBERS[0]]
    record = start(keys, mode="replace")
    assert applier.advance(record.pk)
    assert status(record) == "complete"
    wanted = set(old_kept) | {f"fresh-{i}" for i in range(30)}
    # Visible at once, before a single old row has been deleted.
    assert visible() == wanted
    assert segment().included_count == len(wanted) == 35
    assert len(all_rows()) == 120 + 35
    drain()
    assert sorted(all_rows()) == sorted(wanted)
    # A merge after the replace adds to the new list only.
    merge = start(["fresh-1", VIP_MEMBERS[50], "later"], mode="merge")
    drain()
    assert status(merge) == "complete"
    assert visible() == wanted | {VIP_MEMBERS[50], "later"}
    assert segment().included_count == 37


def test_merge_adds_only_what_is_new_and_counts_it_once(settings: Any) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 3
    record = start([VIP_MEMBERS[0], "m-1", "m-2", "m-1", VIP_MEMBERS[1], "m-3", "m-2"])
    drain()
    assert status(record) == "complete"
    assert SandboxImport.objects.get(pk=record.pk).added_count == 3
    assert segment().included_count == 123
    rows = all_rows()
    assert len(rows) == len(set(rows)) == 123


def test_stop_marker_writes_nothing_and_a_vanished_file_stops_and_cleans_up(settings: Any) -> None:
    stopped = start(["x1", settings.SANDBOX_STOP_MARKER], mode="replace")
    drain()
    assert status(stopped) == "stopped"
    assert visible() == set(VIP_MEMBERS)
    assert len(all_rows()) == 120

    settings.SANDBOX_APPLY_BATCH_KEYS = 10
    settings.SANDBOX_IMPORT_BASE_SECONDS = 3600
    record = start([f"lost-{i}" for i in range(50)])
    applier.apply_batch(record.pk)
    applier.apply_batch(record.pk)
    assert len(all_rows()) == 140
    Path(record.keys_path).unlink()
    assert applier.advance(record.pk)
    assert status(record) == "stopped"
    assert len(all_rows()) == 120  # the staged keys are gone: no later import can ever reveal them
    settings.SANDBOX_IMPORT_BASE_SECONDS = 0
    start(["after"])
    drain()
    assert visible() == set(VIP_MEMBERS) | {"after"}


def test_rows_of_an_import_deleted_by_hand_are_never_shown_by_a_later_import(settings: Any) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 10
    settings.SANDBOX_IMPORT_BASE_SECONDS = 3600
    abandoned = start([f"ghost-{i}" for i in range(50)])
    applier.apply_batch(abandoned.pk)
    applier.apply_batch(abandoned.pk)
    SandboxImport.objects.filter(pk=abandoned.pk).delete()  # e.g. in the admin, while it was running
    assert len(all_rows()) == 140
    settings.SANDBOX_IMPORT_BASE_SECONDS = 0
    later = start(["real-1", "real-2"])
    assert later.generation > abandoned.generation
    drain()
    assert status(later) == "complete"
    assert visible() == set(VIP_MEMBERS) | {"real-1", "real-2"}
    assert len(all_rows()) == 122


# --- restarts ---------------------------------------------------------------------------------------------------


def test_a_crash_inside_a_batch_rolls_it_back_and_the_next_run_redoes_it(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 10
    keys = [f"c-{i}" for i in range(35)] + ["c-3", VIP_MEMBERS[7]]
    record = start(keys)
    original = applier._insert
    batches = []

    def crash_after_writing_the_third_batch(segment_id: int, keys: list[str], generation: int) -> None:
        original(segment_id, keys, generation)
        batches.append(len(keys))
        if len(batches) == 3:
            raise RuntimeError("killed between writing the keys and writing the offset")

    monkeypatch.setattr(applier, "_insert", crash_after_writing_the_third_batch)
    with pytest.raises(RuntimeError):
        applier.advance(record.pk)
    monkeypatch.undo()
    assert batches == [10, 10, 10]
    half = SandboxImport.objects.get(pk=record.pk)
    assert half.added_count == 20  # two batches committed; the third rolled back whole
    assert SandboxMember.objects.filter(generation=record.generation).count() == 20
    drain()
    assert status(record) == "complete"
    assert visible() == set(VIP_MEMBERS) | {f"c-{i}" for i in range(35)}
    assert segment().included_count == 155
    rows = all_rows()
    assert len(rows) == len(set(rows)) == 155


def test_two_appliers_at_once_write_each_key_once(settings: Any) -> None:
    settings.SANDBOX_APPLY_BATCH_KEYS = 50
    record = start([f"twin-{i}" for i in range(2000)], mode="replace")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            drain()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert status(record) == "complete"
    assert segment().included_count == 2000
    assert sorted(all_rows()) == sorted(f"twin-{i}" for i in range(2000))


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.slow
def test_the_applier_process_killed_mid_import_resumes_on_restart_without_loss_or_duplicates(
    settings: Any,
) -> None:
    """`manage.py sandbox_applier`, as `make run` runs it: SIGKILL in the middle, then start it again."""
    total = 200_000
    keys = [f"big-{i:06d}" for i in range(total)]
    record = start(keys, mode="replace")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LD_", "SANDBOX_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        SECRET_KEY="test-secret-key-not-for-production",
        DATABASE_URL=_database_url(),
        LD_SANDBOX="1",
        SANDBOX_APPLY_BATCH_KEYS="500",
        SANDBOX_IMPORT_BASE_SECONDS="0",
        SANDBOX_IMPORT_SECONDS_PER_1000_KEYS="0",
        SANDBOX_APPLIER_INTERVAL="0.05",
    )
    argv = [sys.executable, str(ROOT / "manage.py"), "sandbox_applier"]

    def progress() -> SandboxImport:
        return SandboxImport.objects.get(pk=record.pk)

    first = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while progress().applied_bytes < Path(record.keys_path).stat().st_size // 4:
            assert first.poll() is None, first.stdout.read().decode()
            assert time.monotonic() < deadline, "the applier process made no progress"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed_at = progress()
    assert killed_at.final_status == "", "the import finished before the kill; make it bigger"
    assert 0 < killed_at.added_count < total
    assert SandboxMember.objects.filter(generation=record.generation).count() == killed_at.added_count
    assert visible() == set(VIP_MEMBERS)  # nothing of a half-applied replace is shown

    second = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while status(record) != "complete" or len(all_rows()) > total:  # until the old rows are deleted
            assert second.poll() is None, second.stdout.read().decode()
            assert time.monotonic() < deadline, "the restarted applier did not finish"
            time.sleep(0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            output = second.communicate(timeout=60)[0].decode()
        except subprocess.TimeoutExpired:
            # Never left running past the test: a leaked applier keeps its database connection and
            # stops the next test run from recreating the test database.
            second.kill()
            second.communicate()
            raise
    assert second.returncode == 0, output
    assert segment().included_count == total
    rows = all_rows()
    assert len(rows) == total
    assert set(rows) == set(keys)


def test_readers_and_writers_keep_going_while_a_big_import_is_applied(settings: Any) -> None:
    """The production loop, with another connection reading and writing throughout; each of its writes
    lands while the import is part-way through, which one long transaction would never allow."""
    settings.SANDBOX_APPLY_BATCH_KEYS = 1000
    total = 100_000
    record = start([f"r-{i:06d}" for i in range(total)])
    size = Path(record.keys_path).stat().st_size
    stop = threading.Event()
    observed: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def probe() -> None:
        try:
            while not stop.is_set():
                with transaction.atomic():
                    SandboxProject.objects.filter(key="demo").update(name="Probe")
                    observed.append(
                        (
                            SandboxImport.objects.values_list("applied_bytes", flat=True).get(pk=record.pk),
                            segment().visible_members().count(),
                        )
                    )
                time.sleep(0.005)  # the other connection's pace: it reads and writes throughout
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    prober = threading.Thread(target=probe)
    prober.start()
    applier_stop = threading.Event()

    def apply() -> None:
        try:
            applier.run(applier_stop, interval=0.02, deadline=time.monotonic() + 300)
        finally:
            connection.close()

    runner = threading.Thread(target=apply)
    runner.start()
    try:
        deadline = time.monotonic() + 300
        while status(record) != "complete":
            assert time.monotonic() < deadline, (
                "the import was not complete within 300 s",
                status(record),
                errors,
            )
            time.sleep(0.05)
    finally:
        applier_stop.set()
        stop.set()
        runner.join(timeout=60)
        prober.join(timeout=60)
    assert errors == []
    midway = {offset for offset, _ in observed if 0 < offset < size}
    assert len(midway) >= 2, observed[:20]
    # While the import was part-way, the visible members never changed.
    assert {count for offset, count in observed if 0 < offset < size} == {120}
    assert segment().included_count == 120 + total
