"""The fault battery: the attacks of the reliability review, in bounded time, on real
processes, with the invariants checked afterwards.

A gunicorn (2 workers), a Celery worker and beat run on a database of their own, with
every Redis connection (counters, caches, the broker) through a FaultProxy. While clients
report usage, consume a hard limit, ask for entitlements and send malformed input, the
battery cuts Redis (refuse), hangs it, drops its connections, terminates the service's
database connections, and kill -9s a gunicorn worker and the Celery worker. Clients
behave as the README tells them to: retry a 503, a 429, a timeout or a dropped connection
with the same idempotency key. Then aggregation and period closes are killed mid-run,
several times, and run to the end.

Afterwards:
- no response was a 500;
- every acknowledged event is stored, once, and nothing is stored that was not sent;
- what consumes admitted is what is recorded, and never past the limit;
- the first check after Redis is back answers from what PostgreSQL holds;
- the background recovers by itself: /readyz is 200 again (beat sends, a worker runs);
- rollups equal the raw events;
- every closed period is invoiced once, and invoice numbers have no gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.faults.proxy import FaultProxy
from tests.livedb import ROOT, fresh_database, subprocess_env

pytestmark = [pytest.mark.slow]
LOAD_SECONDS = 36
LIMIT = 1000  # the demo catalog's free plan: api_access, a hard limit on api_calls
CLOSING = 12  # yearly subscriptions whose period ended a year and two hours ago

SEED = """
import json
from datetime import timedelta

import django

django.setup()
from django.utils import timezone

from billing_project.api_keys import api_key_create
from billing_project.audit import system_actor
from billing_project.scopes import ALL_SCOPES
from subscriptions.services import subscription_create, tenant_upsert

now = timezone.now()
with system_actor():
    for i in range(4):
        tenant = tenant_upsert(external_id=f"r{i}", name=f"Reporter {i}", currency="USD")[0]
        subscription_create(tenant=tenant, plan_code="team", actor="battery")
    tenant = tenant_upsert(external_id="c0", name="Consumer", currency="USD")[0]
    subscription_create(tenant=tenant, plan_code="free", actor="battery")
    for i in range(CLOSING):
        tenant = tenant_upsert(external_id=f"p{i}", name=f"Closing {i}", currency="USD")[0]
        at = now - timedelta(days=366, hours=2, minutes=i)
        subscription_create(tenant=tenant, plan_code="enterprise", actor="battery", at=at)
    key = api_key_create(
        name="battery", kind="service", scopes=sorted(ALL_SCOPES), metrics=["ai_tokens", "api_calls"],
        rate_limit_per_minute=1_000_000,
    )
print(json.dumps({"key": key.secret}))
""".replace("CLOSING", str(CLOSING))

AGGREGATE = "import django; django.setup(); from usage.aggregation import usage_aggregate_all; usage_aggregate_all()"
CLOSE = (
    "import django; django.setup()\n"
    "from billing_project.audit import system_actor\n"
    "from subscriptions.services import subscriptions_roll_due\n"
    "from invoicing.issuing import invoices_close_due\n"
    "with system_actor():\n"
    "    subscriptions_roll_due()\n"
    "    invoices_close_due()\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ledger:
    """What the clients saw, for the invariants."""

    sent: set[str] = field(default_factory=set)
    acknowledged: set[str] = field(default_factory=set)
    admitted: dict[str, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    retries: int = 0

    def note(self, text: str, *, error: bool = False) -> None:
        with self.lock:
            (self.server_errors if error else self.unexpected).append(text[:400])


class Client:
    def __init__(self, base: str, key: str, ledger: Ledger) -> None:
        self.base, self.key, self.ledger = base, key, ledger

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, Any] | None:
        """One attempt: (status, parsed body), or None when no answer came (dropped, timed out)."""
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        with self.ledger.lock:
            self.ledger.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310  loopback
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (OSError, TimeoutError):
            return None
        if status >= 500 and status != 503:
            self.ledger.note(f"{status} {method} {path}: {raw[:300]!r}", error=True)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            self.ledger.note(f"{status} {method} {path}: not JSON {raw[:200]!r}")
            return status, None

    def until_answered(self, method: str, path: str, payload: Any, stop: float) -> tuple[int, Any] | None:
        """As the README says: retry a 503, a 429 or a lost answer with the same body (same keys)."""
        body = json.dumps(payload).encode()
        while time.monotonic() < stop:
            answer = self.request(method, path, body)
            if answer is not None and answer[0] not in (429, 503) and answer[0] < 500:
                return answer
            with self.ledger.lock:
                self.ledger.retries += 1
            time.sleep(0.2)
        return None


def reporter(client: Client, name: str, until: float, give_up: float) -> None:
    n = 0
    while time.monotonic() < until:
        keys = [f"{name}-{n}-{i}" for i in range(20)]
        n += 1
        events = [
            {"tenant": f"r{n % 4}", "metric": "ai_tokens", "quantity": str(i + 1), "idempotency_key": k}
            for i, k in enumerate(keys)
        ]
        with client.ledger.lock:
            client.ledger.sent.update(keys)
        answer = client.until_answered("POST", "/api/v1/usage/events", {"events": events}, give_up)
        if answer is None:
            continue  # never answered: stored or not, both are allowed
        status, body = answer
        if status != 200:
            client.ledger.note(f"batch answered {status}: {body}")
            continue
        for result, key in zip(body["results"], keys, strict=True):
            if result["status"] in ("accepted", "duplicate"):
                with client.ledger.lock:
                    client.ledger.acknowledged.add(key)
            else:
                client.ledger.note(f"event {key} rejected: {result}")


def consumer(client: Client, seed: int, until: float, give_up: float) -> None:
    rng = random.Random(seed)  # noqa: S311  not cryptography: a reproducible load
    while time.monotonic() < until:
        key = f"consume-{rng.randrange(600)}"
        quantity = 1 + int(key.rsplit("-", 1)[1]) % 5  # a key always asks the same quantity
        payload = {"tenant": "c0", "feature": "api_access", "quantity": str(quantity), "idempotency_key": key}
        answer = client.until_answered("POST", "/api/v1/entitlements/consume", payload, give_up)
        if answer is None:
            continue
        status, body = answer
        if status == 201:
            with client.ledger.lock:
                client.ledger.admitted[key] = quantity
        elif status != 200:
            client.ledger.note(f"consume answered {status}: {body}")


def checker(client: Client, until: float) -> None:
    body = json.dumps({"tenant": "c0", "feature": "api_access"}).encode()
    while time.monotonic() < until:
        client.request("POST", "/api/v1/entitlements/check", body)
        time.sleep(0.05)


JUNK = [
    b'{"tenant": "c0", "x": ' + b"[" * 950 + b"]" * 950 + b"}",
    b'{"tenant": "c0\\u0000", "feature": "api_access"}',
    b'{"tenant": "\\ud800", "feature": "api_access"}',
    b'{"tenant": "c0", "feature": "api_access", "quantity": 1e1000000}',
    b'{"events": [{"tenant": "r0", "metric": "ai_tokens", "quantity": "1e1000000", "idempotency_key": "j"}]}',
    b"{not json",
    b'{"tenant": ["c0"], "feature": {"a": 1}}',
]
JUNK_PATHS = ["/api/v1/entitlements/check", "/api/v1/entitlements/consume", "/api/v1/usage/events"]


def junk(client: Client, seed: int, until: float) -> None:
    rng = random.Random(seed)  # noqa: S311
    while time.monotonic() < until:
        client.request("POST", rng.choice(JUNK_PATHS), rng.choice(JUNK))
        for path in ("/api/v1/tenants/c%00/billing", "/api/v1/invoices/%00?format=html", "/api/v1/plans?x=%00"):
            client.request("GET", path, None)
        time.sleep(0.1)


def terminate_connections(admin: dict[str, Any], database: str) -> None:
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )


def kill_one(process: subprocess.Popen[bytes], pattern: str) -> bool:
    """kill -9 one child of `process` whose command line holds `pattern` (a gunicorn or Celery
    worker process; its master makes a new one)."""
    for child in psutil.Process(process.pid).children(recursive=True):
        if pattern in " ".join(child.cmdline()):
            child.kill()
            return True
    return False


def faults(proxy: FaultProxy, servers: dict[str, subprocess.Popen[bytes]], admin: dict[str, Any], db: str) -> None:
    """The attack, on a timetable (seconds from the start of the load)."""
    plan: list[tuple[float, str]] = [
        (3, "refuse"),
        (5, "pass"),
        (8, "hang"),
        (11, "pass"),
        (13, "drop"),
        (15, "terminate"),
        (17, "kill-web"),
        (20, "refuse"),
        (21, "pass"),
        (23, "kill-worker"),
        (26, "terminate"),
        (28, "hang"),
        (30, "pass"),
        (31, "drop"),
    ]
    started = time.monotonic()
    for at, action in plan:
        time.sleep(max(0.0, started + at - time.monotonic()))
        if action in ("refuse", "hang", "drop", "pass"):
            proxy.set(action)
        elif action == "terminate":
            # a burst: a connection killed while idle is reopened unnoticed (health checks),
            # so the fault is felt only by a query in flight; one moment may catch none
            for _ in range(5):
                terminate_connections(admin, db)
                time.sleep(0.1)
        elif action == "kill-web":
            kill_one(servers["web"], "gunicorn")
        elif action == "kill-worker":
            kill_one(servers["worker"], "celery")
    proxy.set("pass")


def run_killed(env: dict[str, str], code: str, kills: int, rng: random.Random) -> None:
    """Run `code` in a process killed -9 at a random moment `kills` times, then to the end."""
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)  # noqa: S603
        time.sleep(rng.uniform(0.6, 2.0))  # Django's start-up is most of a second
        proc.kill()
        proc.wait(10)
    for _ in range(2):  # and once more when there is nothing left to do
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: S603
        assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def battery(django_db_blocker, settings, tmp_path) -> Iterator[dict[str, Any]]:
    if os.environ.get("BILLING_TEST_CLOCK"):
        pytest.skip("the service's processes run on the real clock: attacked once, in the run that does not move it")
    database_url = fresh_database(django_db_blocker, "faults")
    proxy = FaultProxy(settings.REDIS_URL)
    env = subprocess_env()
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=proxy.url,
        REDIS_KEY_PREFIX="billing-faults",
        CELERY_QUEUE="billing-faults",
        DEBUG="0",
        SECURE_SSL_REDIRECT="0",  # served over plain http on loopback
        DJANGO_SETTINGS_MODULE="billing_project.settings",
    )
    seeded = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "manage.py"), "demo_setup", "--credentials", str(tmp_path / "c.json")],
        cwd=ROOT,
        env={**env, "DEBUG": "1"},  # demo_setup runs only with DEBUG on; the server runs without
        capture_output=True,
        text=True,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    seeded = subprocess.run([sys.executable, "-c", SEED], cwd=ROOT, env=env, capture_output=True, text=True)  # noqa: S603
    assert seeded.returncode == 0, seeded.stderr
    key = json.loads(seeded.stdout.strip().splitlines()[-1])["key"]
    port = free_port()
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("web", "worker", "beat")}
    celery = [sys.executable, "-m", "celery", "-A", "billing_project"]
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "billing_project.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"],
        "worker": [*celery, "worker", "-Q", "billing-faults", "-c", "2", "--loglevel", "WARNING"],
        "beat": [*celery, "beat", "--loglevel", "WARNING", "-s", str(tmp_path / "beat-schedule")],
    }
    servers = {
        name: subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True
        )  # noqa: S603
        for name, cmd in commands.items()
    }
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()  # noqa: S310
                break
            except OSError:
                assert servers["web"].poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not come up"
                time.sleep(0.2)
        params = psycopg.conninfo.conninfo_to_dict(database_url)
        admin = {k: v for k, v in params.items() if k != "dbname"} | {"dbname": "postgres"}
        yield {
            "base": base,
            "key": key,
            "env": env,
            "proxy": proxy,
            "servers": servers,
            "admin": admin,
            "database_url": database_url,
            "database": params["dbname"],
            "logs": tmp_path,
        }
    finally:
        for proc in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in servers.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proxy.close()


def test_the_attack_leaves_every_invariant_standing(battery):
    ledger = Ledger()
    client = Client(battery["base"], battery["key"], ledger)
    start = time.monotonic()
    until, give_up = start + LOAD_SECONDS, start + LOAD_SECONDS + 60
    threads = [threading.Thread(target=reporter, args=(client, f"rep{i}", until, give_up)) for i in range(3)]
    threads += [threading.Thread(target=consumer, args=(client, i, until, give_up)) for i in range(2)]
    threads += [
        threading.Thread(target=checker, args=(client, until)),
        threading.Thread(target=junk, args=(client, 7, until)),
    ]
    attacker = threading.Thread(
        target=faults, args=(battery["proxy"], battery["servers"], battery["admin"], battery["database"])
    )
    for thread in [*threads, attacker]:
        thread.start()
    for thread in [*threads, attacker]:
        thread.join(LOAD_SECONDS + 120)
        assert not thread.is_alive(), f"{thread.name} never finished"

    # ------------------------------------------------------------ no 500, no surprise
    assert ledger.server_errors == [], ledger.server_errors[:10]
    assert ledger.unexpected == [], ledger.unexpected[:10]
    assert len(ledger.acknowledged) > 500, (len(ledger.acknowledged), ledger.requests, ledger.retries)
    assert ledger.retries > 0, "no fault was felt: the battery attacked nothing"

    with psycopg.connect(battery["database_url"], autocommit=True) as db:
        # ------------------------------------------------------------ acknowledged = stored, once
        stored = [
            k
            for (k,) in db.execute(
                "SELECT idempotency_key FROM usage_usageevent e JOIN subscriptions_tenant t ON t.id = e.tenant_id "
                "WHERE t.external_id LIKE 'r%%' AND e.origin = 'reported'"
            )
        ]
        assert len(stored) == len(set(stored)), "an event stored twice"
        assert ledger.acknowledged <= set(stored), sorted(ledger.acknowledged - set(stored))[:10]
        assert set(stored) <= ledger.sent, sorted(set(stored) - ledger.sent)[:10]

        # ------------------------------------------------------------ admitted = recorded
        row = db.execute(
            "SELECT count(*) FROM usage_usageevent e JOIN subscriptions_tenant t ON t.id = e.tenant_id "
            "WHERE t.external_id = 'c0' AND e.origin = 'consume'"
        ).fetchone()
        assert row is not None
        recorded = int(row[0])
        records: dict[str, Decimal] = dict(
            db.execute(
                "SELECT r.idempotency_key, r.quantity FROM entitlements_consumerecord r "
                "JOIN subscriptions_tenant t ON t.id = r.tenant_id WHERE t.external_id = 'c0' AND r.recorded"
            ).fetchall()
        )
        assert recorded == sum(records.values()), (recorded, sum(records.values()))
        for key, quantity in ledger.admitted.items():
            assert records.get(key) == Decimal(quantity), (key, quantity, records.get(key))
        assert recorded <= LIMIT
        assert sum(ledger.admitted.values()) <= recorded

    # ------------------------------------------------------------ the first check after
    time.sleep(1.1)  # every process's counter trust lease (COUNTER_TRUST_MS) has lapsed since the last fault
    status, answer = client.request(
        "POST", "/api/v1/entitlements/check", json.dumps({"tenant": "c0", "feature": "api_access"}).encode()
    ) or (0, None)
    assert status == 200, answer
    assert answer is not None
    assert Decimal(answer["used"]) == recorded, (answer, recorded)

    # ------------------------------------------------------------ the background recovers
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{battery['base']}/readyz", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    break
        except (urllib.error.HTTPError, OSError):
            pass
        assert time.monotonic() < deadline, "beat and the worker did not recover: /readyz never 200 again"
        time.sleep(1)

    # ------------------------------------------------------------ killed mid-run, then to the end
    rng = random.Random(12)  # noqa: S311
    env = {**battery["env"], "REDIS_URL": battery["proxy"].upstream_url}
    run_killed(env, AGGREGATE, kills=4, rng=rng)
    run_killed(env, CLOSE, kills=4, rng=rng)
    with psycopg.connect(battery["database_url"], autocommit=True) as db:
        raw = db.execute(
            "SELECT tenant_id, metric_id, count(*), sum(quantity) FROM usage_usageevent GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        rolled = db.execute(
            "SELECT tenant_id, metric_id, sum(count), sum(sum) FROM usage_usagerollup GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        assert rolled == raw
        # every closed paid period of the closing subscriptions invoiced once, numbers without a gap
        periods = db.execute(
            "SELECT p.id, count(i.id) FROM subscriptions_billingperiod p "
            "JOIN subscriptions_subscription s ON s.id = p.subscription_id "
            "JOIN subscriptions_tenant t ON t.id = s.tenant_id "
            "LEFT JOIN invoicing_invoice i ON i.period_id = p.id "
            "WHERE t.external_id LIKE 'p%%' AND p.closed AND p.kind = 'paid' GROUP BY p.id"
        ).fetchall()
        assert len(periods) == CLOSING, periods
        assert all(n == 1 for _, n in periods), periods
        for series, year, last in db.execute("SELECT series, year, last_number FROM invoicing_invoicesequence"):
            numbers = sorted(
                int(number.rsplit("-", 1)[1])
                for (number,) in db.execute(
                    "SELECT number FROM invoicing_invoice WHERE series = %s AND number LIKE %s",
                    [series, f"{series}-{year}-%"],
                )
            )
            assert numbers == list(range(1, last + 1)), (series, year, numbers[:5], last)
    logs = {name: (Path(battery["logs"]) / f"{name}.log").read_text(errors="replace") for name in ("web", "worker")}
    assert "Internal Server Error" not in logs["web"], logs["web"][-3000:]
    # the attack was felt where it was aimed: writers missed Redis, the database went away,
    # the worker lost its broker
    assert "usage.counters.unreachable" in logs["web"]
    assert "api.database_unavailable" in logs["web"]
    assert "Connection to broker lost" in logs["worker"] or "Cannot connect to redis" in logs["worker"]
