"""The service behind PgBouncer in transaction mode (Debian's pgbouncer, started here), one
server connection shared by every transaction so that any session state a statement left
behind would meet the next one: usage in single events, batches and duplicates, an
entitlement check, the period close and the readiness probe, in a process configured with
DATABASE_POOLER=transaction; then the probe's statement timeout must not have stayed on
the shared connection, and the books must be what was sent."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCRIPT = r"""
import json, django
django.setup()
from datetime import timedelta
from pathlib import Path
from django.db import connection
from django.test import Client
from django.utils import timezone
from billing_project.api_keys import api_key_create
from billing_project.health import _database
from invoicing.models import Invoice
from invoicing.services import invoices_close_due
from plans.catalog import load_file
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from usage.models import UsageEvent

now = timezone.now()
catalog_import(spec=catalog_validate(load_file(Path('plans/fixtures/demo_catalog.yaml'))))
tenant = tenant_upsert(external_id='pooled', name='Pooled', currency='USD')[0]
sub = subscription_create(tenant=tenant, plan_code='pro', actor='t', at=now - timedelta(days=75))
subscription_roll(subscription_id=sub.pk, at=now - timedelta(minutes=90))
key = api_key_create(name='pooled', kind='service', scopes=['usage:write', 'entitlements:read'], metrics=['api_calls'])
client = Client(HTTP_HOST='localhost', HTTP_AUTHORIZATION=f'Bearer {key.secret}')
at = (now - timedelta(minutes=5)).strftime('%Y-%m-%dT%H:%M:%SZ')
def event(i):
    return {'tenant': 'pooled', 'metric': 'api_calls', 'quantity': '1', 'idempotency_key': f'e{i}', 'occurred_at': at}
def post(path, body):
    return client.post(path, body, content_type='application/json')
statuses = [post('/api/v1/usage/events', event(i)).status_code for i in range(40)]
batch = post('/api/v1/usage/events', {'events': [event(i) for i in range(30, 130)]})
_database(); _database()
check = post('/api/v1/entitlements/check', {'tenant': 'pooled', 'feature': 'api_access'})
made = invoices_close_due(now=now)
_database()
with connection.cursor() as cursor:
    cursor.execute('SHOW statement_timeout')
    timeout = cursor.fetchone()[0]
print(json.dumps({
    'singles': sorted(set(statuses)), 'batch': batch.status_code, 'batch_body': batch.json(),
    'check': check.status_code, 'invoices_made': made, 'invoices': Invoice.objects.count(),
    'events': UsageEvent.objects.filter(tenant=tenant).count(), 'statement_timeout': timeout,
}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bouncer():
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        if os.environ.get("REQUIRE_PGBOUNCER"):
            pytest.fail("pgbouncer is missing (.ci/run installs Debian's pgbouncer)")
        pytest.skip("no pgbouncer: `apt-get install pgbouncer` (make test under .ci/run requires it)")
    db = settings.DATABASES["default"]
    host = db.get("HOST") or "127.0.0.1"
    if str(host).startswith("/"):
        pytest.skip("PostgreSQL on a Unix socket (the embedded engine): this test needs it on TCP, as CI runs it")
    port = free_port()
    # pgbouncer refuses to run as root: it runs as nobody, who must reach its files (pytest's
    # own tmp_path is under a directory only root enters)
    tmp_path = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    tmp_path.chmod(0o777)
    (tmp_path / "users.txt").write_text(f'"{db["USER"]}" ""\n')
    (tmp_path / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={db.get('PORT') or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp_path / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 50\n"
        f"logfile = {tmp_path / 'pgbouncer.log'}\npidfile = {tmp_path / 'pgbouncer.pid'}\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (tmp_path / name).chmod(0o644)
    as_root = ["-u", "nobody"] if os.geteuid() == 0 else []
    args = [binary, "-q", *as_root, str(tmp_path / "pgbouncer.ini")]
    proc = subprocess.Popen(args)  # noqa: S603
    try:
        deadline = time.monotonic() + 15
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            log = tmp_path / "pgbouncer.log"
            assert proc.poll() is None, log.read_text() if log.exists() else "pgbouncer exited"
            assert time.monotonic() < deadline, "pgbouncer did not listen"
            time.sleep(0.1)
        yield f"postgresql://{db['USER']}@127.0.0.1:{port}/{db['NAME']}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_service_runs_behind_pgbouncer_in_transaction_mode(bouncer):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings",
        "DATABASE_URL": bouncer,
        "DATABASE_POOLER": "transaction",
        "REDIS_KEY_PREFIX": f"{settings.REDIS_KEY_PREFIX}-pooled",
        "CELERY_QUEUE": f"{settings.REDIS_KEY_PREFIX}-pooled",
        "SECURE_SSL_REDIRECT": "false",
        "STRIPE_COLLECTION_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
    }
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["singles"] == [201]
    assert found["batch"] == 200
    assert (found["batch_body"]["accepted"], found["batch_body"]["duplicates"]) == (90, 10)
    assert found["check"] == 200
    assert found["invoices_made"] >= 2
    assert found["invoices"] == found["invoices_made"]
    assert found["events"] == 130  # every accepted event once, the duplicates not again
    # the probe's timeout was its own transaction's: the one shared server connection kept none
    assert found["statement_timeout"] == "0"
