"""README command 1 (`make run` → billing_project.devrun) and the embedded engines, for real."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def test_embedded_engines_start_serve_and_stop(tmp_path):
    env = {k: v for k, v in base_env().items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env["BILLING_DATA_DIR"] = str(tmp_path)
    probe = (
        "import os, psycopg, redis;"
        "c = psycopg.connect(os.environ['DATABASE_URL']);"
        "print(c.execute('select version()').fetchone()[0]);"
        "print(redis.Redis.from_url(os.environ['REDIS_URL']).ping());"
        "print(os.environ['REDIS_URL'])"
    )
    result = subprocess.run(
        [sys.executable, "-m", "billing_project.embedded", "exec", "--", sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    version, pong, redis_url = result.stdout.strip().splitlines()[-3:]
    assert version.startswith("PostgreSQL 16")
    assert pong == "True"
    # whoever started the engines stopped them
    assert not list((tmp_path / "pg").glob("postmaster.pid"))
    socket_path = redis_url.removeprefix("unix://").split("?")[0]
    assert not os.path.exists(socket_path) or not _redis_alive(socket_path)


def _redis_alive(path: str) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=path).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def run_database(django_db_blocker) -> str:
    """A database of its own for the run check, kept between runs (migrations take a minute)."""
    params = connection.get_connection_params()
    name = f"{connection.settings_dict['NAME']}_runcheck".replace("test_", "")
    admin = {k: v for k, v in params.items() if k not in ("cursor_factory", "context", "options")}
    admin["dbname"] = "postgres"
    with django_db_blocker.unblock(), psycopg.connect(**admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    host = params.get("host") or ""
    if host.startswith("/"):
        return f"postgresql://{params.get('user', 'postgres')}@/{name}?host={host}"
    return f"postgresql://{params.get('user', 'postgres')}@{host}:{params.get('port', 5432)}/{name}"


def test_make_run_brings_up_web_worker_and_beat_and_ctrl_c_stops_them(run_database, tmp_path):
    port = free_port()
    env = base_env()
    env.update(
        DATABASE_URL=run_database,
        PORT=str(port),
        BILLING_DATA_DIR=str(tmp_path),
        REDIS_KEY_PREFIX="billing-runcheck",
        CELERY_QUEUE="billing-runcheck",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing_project.devrun"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        banner = "".join(output)
        assert "Billing service is up." in banner, banner
        base = f"http://127.0.0.1:{port}"
        assert http(f"{base}/healthz")[0] == 200
        status, body = http(f"{base}/readyz")
        assert status == 200, body
        assert http(f"{base}/api/docs/")[0] == 200
        assert http(f"{base}/api/schema/")[0] == 200
        assert http(f"{base}/admin/login/")[0] == 200
        creds = json.loads((tmp_path / "demo-credentials.json").read_text())
        assert creds["admin_password"] in banner
        assert creds["service_key"] in banner
        assert creds["agent_key"] in banner
        # the worker consumes beat's heartbeat
        heartbeat_seen = False
        for _ in range(60):
            checks = json.loads(http(f"{base}/readyz")[1])["checks"]
            if checks["redis"].get("worker_heartbeat_age_s") is not None:
                heartbeat_seen = True
                break
            time.sleep(0.5)
        assert heartbeat_seen, "beat → worker heartbeat never arrived"
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "gunicorn" in names
        assert "worker" in names
        assert "beat" in names
    finally:
        # Ctrl-C
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest or "")
    assert proc.returncode == 0, "".join(output)
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"still running after Ctrl-C: {alive}"
    assert re.search(r"stopped\.", "".join(output))
