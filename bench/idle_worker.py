"""What an idle import worker costs: CPU of `manage.py import_worker` with nothing to do, against the
same process kind sleeping (the baseline: Django loaded, no polling), in a fresh SQLite database.

An idle worker looks for work every 50 ms (no Redis) so that a new upload starts at once; this says
what that readiness costs a small machine while nobody imports anything.

    .venv/bin/python bench/idle_worker.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from benchlib import PY, ROOT, exit_on_signals, prepare_site, site_env, workdir

TARGET_PERCENT_OF_A_CORE = 10.0


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def measure(command: list[str], env: dict[str, str], seconds: float) -> float:
    """Percent of one core the process used over `seconds`, after 5 s to start and settle."""
    process = subprocess.Popen(command, env=env, cwd=ROOT)  # noqa: S603
    try:
        time.sleep(5)
        before = cpu_seconds_of(process.pid)
        time.sleep(seconds)
        return (cpu_seconds_of(process.pid) - before) / seconds * 100
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    exit_on_signals()
    with workdir("bench-idle-") as work:
        env = site_env(work, standin_port=9, LOG_LEVEL="WARNING")
        prepare_site(env)
        sleeping = [PY, "-c", "import django, os, time; django.setup(); time.sleep(3600)"]
        baseline = measure(sleeping, {**env, "PYTHONPATH": str(ROOT)}, args.seconds)
        idle = measure([PY, str(ROOT / "manage.py"), "import_worker"], env, args.seconds)
    met = idle <= TARGET_PERCENT_OF_A_CORE
    print(
        f"idle import worker: {idle:.1f}% of a core over {args.seconds:.0f} s "
        f"(a sleeping Django process: {baseline:.1f}%); ≤ {TARGET_PERCENT_OF_A_CORE:.0f}%: "
        f"{'MET' if met else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
