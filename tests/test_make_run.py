"""`make run` on a fresh database: serves the login page, and after login the sandbox's demo project."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_serves_login_and_the_demo_picker(tmp_path: Path) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "LD_", "SANDBOX_", "PYTEST_", "SECRET_KEY", "DEBUG"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        SANDBOX_STORAGE_DIR=str(tmp_path / "sandbox"),
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"ADDR=127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "make run exited early:\n" + "".join(output)
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "make run did not start:\n" + "".join(output)
            time.sleep(0.5)

        printed = "".join(output)
        password = re.search(r"password: (\S+)", printed)
        assert password, printed
        session = requests.Session()
        login_page = session.get(f"{base}/", timeout=10)
        assert login_page.url == f"{base}/accounts/login/?next=/"
        assert "Log in" in login_page.text
        response = session.post(
            f"{base}/accounts/login/",
            data={
                "username": "admin",
                "password": password.group(1),
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
                "next": "/",
            },
            headers={"Referer": f"{base}/accounts/login/"},
            timeout=30,
        )
        assert response.url == f"{base}/"
        assert "Demo project" in response.text
        assert 'href="/segments/demo/production/"' in response.text
        assert 'href="/segments/demo/staging/"' in response.text
        assert requests.get(f"{base}/static/vendor/htmx-2.0.11.min.js", timeout=5).status_code == 200

        # An upload finishes with no browser polling its badge: the background worker moves it.
        form_url = f"{base}/segments/demo/staging/churn-risk/imports/new/"
        session.get(form_url, timeout=30)
        uploaded = session.post(
            form_url,
            data={"mode": "merge", "action": "upload", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            files={"file": ("keys.csv", b"made-1\nmade-2\n", "text/csv")},
            headers={"Referer": form_url},
            timeout=60,
            allow_redirects=False,
        )
        assert uploaded.status_code == 302, uploaded.text[:2000]
        detail_url = f"{base}{uploaded.headers['Location']}"
        deadline = time.monotonic() + 60
        while "Complete — 2 keys" not in session.get(detail_url, timeout=30).text:
            assert time.monotonic() < deadline, "the worker did not finish the import:\n" + "".join(output)
            time.sleep(1)
    finally:
        # Ctrl-C in a terminal signals the whole foreground group; do the same.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/healthz", timeout=2)
