"""The upgrade to partitioned usage events (usage migration 0005) on a database that holds
events already: every event is kept with its id and content, in its month's partition,
each with its key; the old keys still deduplicate; the id sequence carries on past them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from billing_project.backup import conninfo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

UPGRADE = r"""
import json
from datetime import UTC, datetime
from decimal import Decimal

import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

call_command("migrate", "usage", "0004", verbosity=0)
for app, name in sorted(MigrationLoader(connection).graph.leaf_nodes()):
    if app != "usage":
        call_command("migrate", app, name, verbosity=0)

import time_machine
from billing_project.api_keys import ApiPrincipal, api_key_create
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.plans.factories import demo
from usage.models import UsageEvent

catalog_import(spec=catalog_validate(demo()))
tenant = tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]
subscription_create(tenant=tenant, plan_code="team", actor="test", at=datetime(2025, 1, 1, tzinfo=UTC))
key = api_key_create(name="svc", kind="service", scopes=["usage:write"], metrics=["ai_tokens"])
from plans.models import BillableMetric
metric = BillableMetric.objects.get(code="ai_tokens")
common = dict(tenant=tenant, metric=metric, reported_by_id=key.key.pk, payload_hash="h", received_at=datetime.now(UTC))
stored = [
    UsageEvent.objects.create(quantity=Decimal(n), occurred_at=datetime(2025, month, 3, tzinfo=UTC),
                              idempotency_key=f"k{n}", **common).pk
    for n, month in enumerate((1, 1, 2, 5, 5, 5), start=1)
]
stored.append(UsageEvent.objects.create(quantity=1, occurred_at=datetime(2025, 5, 4, tzinfo=UTC), idempotency_key="c",
                                        origin="consume", use=2, **common).pk)
before = sorted(UsageEvent.objects.values_list("id", "idempotency_key", "origin", "use", "quantity", "occurred_at"))

call_command("migrate", "usage", verbosity=0)

from usage.ingestion import usage_record
from usage.models import UsageEventKey
after = sorted(UsageEvent.objects.values_list("id", "idempotency_key", "origin", "use", "quantity", "occurred_at"))
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'usage_usageevent'::regclass")
    partitioned = cursor.fetchone()[0] == 1
    cursor.execute("SELECT id, tableoid::regclass::text FROM usage_usageevent ORDER BY id")
    homes = {str(pk): table for pk, table in cursor.fetchall()}
    cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'usage_usageevent' ORDER BY 1")
    indexes = [name for (name,) in cursor.fetchall()]
    cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'usage_usageevent'::regclass AND NOT tgisinternal")
    triggers = sorted(name for (name,) in cursor.fetchall())
keys = sorted(UsageEventKey.objects.values_list("event_id", "idempotency_key", "origin", "use"))
principal = ApiPrincipal.from_key(key.key)
with time_machine.travel(datetime(2025, 5, 20, tzinfo=UTC), tick=False):
    again = usage_record(principal=principal, events=[
        {"tenant": "acme", "metric": "ai_tokens", "quantity": "4", "idempotency_key": "k4",
         "occurred_at": "2025-05-03T00:00:00Z"},
        {"tenant": "acme", "metric": "ai_tokens", "quantity": "9", "idempotency_key": "new",
         "occurred_at": "2025-05-10T00:00:00Z"},
    ])
print(json.dumps({
    "same": before == after, "count": len(after), "partitioned": partitioned, "homes": homes,
    "keys": [[k[0], k[1], k[2], k[3]] for k in keys], "stored": stored, "indexes": indexes, "triggers": triggers,
    "again": [[r.outcome.value, r.id, r.error.code if r.error else None] for r in again],
}))
"""


@pytest.fixture
def upgrade_database() -> Iterator[str]:
    s = connection.settings_dict
    name = f"{s['NAME']}_upgrade"
    admin = psycopg.conninfo.make_conninfo(conninfo(), dbname="postgres")
    drop = psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    host = s.get("HOST") or (s.get("OPTIONS") or {}).get("host") or ""
    port = f"&port={s['PORT']}" if s.get("PORT") else ""
    yield f"postgresql://{s.get('USER') or 'postgres'}@/{name}?host={host}{port}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)


def test_the_upgrade_keeps_every_event_in_its_month_with_its_key(upgrade_database):
    env = {**os.environ, "DATABASE_URL": upgrade_database, "DJANGO_SETTINGS_MODULE": "billing_project.settings"}
    out = subprocess.run(
        [sys.executable, "-c", UPGRADE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["partitioned"] is True
    assert found["same"] is True
    assert found["count"] == 7
    stored = found["stored"]
    assert {found["homes"][str(pk)] for pk in stored[:2]} == {"usage_usageevent_y2025m01"}
    assert found["homes"][str(stored[2])] == "usage_usageevent_y2025m02"
    assert {found["homes"][str(pk)] for pk in stored[3:]} == {"usage_usageevent_y2025m05"}
    assert [k[0] for k in found["keys"]] == sorted(stored)  # one key per event, under its id
    assert ["c", "consume", 2] in [k[1:] for k in found["keys"]]
    # the indexes the events had, on the partitioned table; the unique keys moved out
    assert {"usage_usageevent_pkey", "usageevent_period_idx", "usageevent_received_idx"} <= set(found["indexes"])
    assert not {"usageevent_idempotent", "usageevent_consume_use"} & set(found["indexes"])
    assert found["triggers"] == ["usage_usageevent_append_only", "usage_usageevent_append_only_truncate"]
    taken, new = found["again"]
    assert taken == ["rejected", None, "idempotency_conflict"]  # a key stored before the upgrade is still taken
    assert new[0] == "accepted"
    assert new[1] > max(stored)  # the id sequence carries on past the copied events
