"""`make run`: the whole system on one machine — web, Celery worker, Celery beat.

Starts the embedded PostgreSQL and Redis when DATABASE_URL / REDIS_URL are
unset, migrates, loads the demo data, starts the three processes, prints where
to go, and stops everything it started on Ctrl-C (or when one process dies).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .embedded import BASE_DIR, data_dir, local_environment

GRACE_SECONDS = 10


def _run(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, env=env, cwd=BASE_DIR, check=True)


def _wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310  loopback only
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.25)
    return False


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for proc in processes.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


LOCAL_HTTP = {
    "DEBUG": "1",  # a developer's machine: demo_setup runs only with DEBUG on
    "SECURE_SSL_REDIRECT": "0",
    "SECURE_HSTS_SECONDS": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
}


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    python = sys.executable
    with local_environment() as local:
        env = {
            # a developer's server, reached over plain http on purpose: DEBUG, no redirect to
            # https, no HSTS, cookies without Secure (anything set in the environment wins)
            **LOCAL_HTTP,
            **os.environ,
            **local,
            "DJANGO_SETTINGS_MODULE": "billing_project.settings",
            "PYTHONUNBUFFERED": "1",
        }
        metrics_dir = data_dir() / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

        manage = [python, str(BASE_DIR / "manage.py")]
        print("• migrating (about a minute on a fresh database: dj-stripe's migrations)…", flush=True)
        _run([*manage, "migrate", "--noinput", "-v", "0"], env)
        _run([*manage, "collectstatic", "--noinput", "-v", "0"], env)
        _run([*manage, "demo_setup", "--credentials", str(data_dir() / "demo-credentials.json")], env)
        creds = json.loads((data_dir() / "demo-credentials.json").read_text())

        logs = data_dir() / "logs"
        logs.mkdir(exist_ok=True)
        commands = {
            # No gunicorn access log: the application writes one JSON line per request.
            "web": [
                python,
                "-m",
                "gunicorn",
                "billing_project.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                os.environ.get("WEB_WORKERS", "2"),
                # its control socket under .data/, not ~/.gunicorn: two checkouts must not share one
                "--control-socket",
                str(data_dir() / "gunicorn.ctl"),
            ],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "billing_project",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
            ],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "billing_project",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(data_dir() / "celerybeat-schedule"),
            ],
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            for name, cmd in commands.items():
                log = (logs / f"{name}.log").open("ab")
                # Own session each, so Ctrl-C reaches only us and we stop them in order.
                processes[name] = subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=BASE_DIR,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            base = f"http://127.0.0.1:{port}"
            if not _wait_http(f"{base}/healthz", 30):
                print(f"web did not come up; see {logs / 'web.log'}", file=sys.stderr)
                return 1
            print(_banner(base, creds, logs), flush=True)
            while not stopping:
                for name, proc in processes.items():
                    if proc.poll() is not None:
                        print(
                            f"{name} exited with {proc.returncode}; see {logs / (name + '.log')}",
                            file=sys.stderr,
                        )
                        return 1
                time.sleep(0.5)
            print("\nstopping web, worker and beat…", flush=True)
            return 0
        finally:
            _stop(processes)
            print("stopped.", flush=True)


def _banner(base: str, creds: dict[str, str], logs: Path) -> str:
    # What staff changed since the demo was set up stays changed: say so rather than reset it.
    creds = {
        "admin_password": "(changed since the demo was set up)",
        "admin_totp_key": "(replaced in the admin)",
        "approver_password": "(changed since the demo was set up)",
        "approver_totp_key": "(replaced in the admin)",
        "service_key": "(revoked in the admin)",
        "agent_key": "(revoked in the admin)",
        **creds,
    }
    return f"""
Billing service is up.

  API docs       {base}/api/docs/
  OpenAPI schema {base}/api/schema/
  Admin          {base}/admin/      login: {creds["admin_username"]} / {creds["admin_password"]}
                 + the authenticator code: add key {creds["admin_totp_key"]} to an app,
                   or run `DEBUG=1 .venv/bin/python manage.py demo_totp` for the current one
  Approver       login: {creds.get("approver_username", "approver")} / {creds["approver_password"]}
                 (finance-approver: decides the admin's requests above the thresholds)
                 + key {creds["approver_totp_key"]}, or `… manage.py demo_totp --user approver`
  Finance        {base}/admin/console/  (the numbers; a tenant's page: Tenants → Whole picture)
  Health         {base}/healthz   {base}/readyz   {base}/metrics

  Demo tenant    {creds["tenant"]}
  Service key    {creds["service_key"]}
  Agent key      {creds["agent_key"]}

  Try:  curl -s -H "Authorization: Bearer {creds["agent_key"]}" {base}/api/v1/plans
        curl -s -H "Authorization: Bearer {creds["agent_key"]}" {base}/api/v1/tenants/{creds["tenant"]}/billing
        curl -s -H "Authorization: Bearer {creds["agent_key"]}" -H "Content-Type: application/json" \\
             -d '{{"plan": "pro", "usage": {{"ai_tokens": "12000000", "api_calls": "25000"}}}}' \\
             {base}/api/v1/pricing/estimate
  Logs: {logs}/web.log, worker.log, beat.log

Ctrl-C stops web, worker, beat and the embedded PostgreSQL and Redis.
"""


if __name__ == "__main__":
    sys.exit(main())
