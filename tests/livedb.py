"""Databases of their own for tests that run the service as separate processes (make run,
a gunicorn for fuzzing): committed data a subprocess can see, fresh at every use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def subprocess_env() -> dict[str, str]:
    """The suite's environment for a child process of the service (not pytest's, not Django's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.setdefault("SECRET_KEY", "live-test")
    return env


def manage_py(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`manage.py <args>` as a separate process of the service (its output captured; stdin
    closed, so a command that would read it ends)."""
    return subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def fresh_database(django_db_blocker: object, suffix: str) -> str:
    """The URL of a new database `<suite db>_<suffix>`, copied from a migrated template kept
    between runs (dj-stripe's migrations take a minute); the copy is new every time."""
    params = connection.get_connection_params()
    name = f"{connection.settings_dict['NAME']}_{suffix}".replace("test_", "")
    # one template for every xdist worker (test_billing_gw0, _gw1, …): migrated once, under the lock
    template = re.sub(r"_gw\d+$", "", connection.settings_dict["NAME"]).replace("test_", "") + "_template"
    admin = {k: v for k, v in params.items() if k not in ("cursor_factory", "context", "options")}
    admin["dbname"] = "postgres"
    host = params.get("host") or ""
    user = params.get("user", "postgres")

    def url(db: str) -> str:
        if host.startswith("/"):
            return f"postgresql://{user}@/{db}?host={host}"
        return f"postgresql://{user}@{host}:{params.get('port', 5432)}/{db}"

    with django_db_blocker.unblock(), psycopg.connect(**admin, autocommit=True) as conn:  # type: ignore[attr-defined]
        # one template at a time (two suites on one server): an advisory lock around it
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [template])
        try:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [template]).fetchone():
                conn.execute(f'CREATE DATABASE "{template}"')
            env = subprocess_env()
            env["DATABASE_URL"] = url(template)
            migrated = manage_py("migrate", "--noinput", "-v", "0", env=env)
            assert migrated.returncode == 0, migrated.stderr
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [template])
    return url(name)
