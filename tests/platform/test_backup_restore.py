"""Backup and restore, drilled end to end (issue 17, part 2): books with invoices, payments,
credit, a credit note, usage and a sealed audit chain are dumped with `manage.py backup`,
restored into an empty database with `manage.py restore --verify`, and found equal to the
manifest with every invariant holding; a damaged dump, a database that is not empty, a
manifest that disagrees and a copy whose books were edited below the ORM are each caught."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from billing_project.api_keys import ApiPrincipal, api_key_create
from billing_project.backup import broken_invariants, conninfo
from billing_project.chain import chain_seal_all
from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import Invoice
from invoicing.services import credit_note_issue, invoice_mark_paid, invoices_close_due
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, subscription_roll, tenant_upsert
from tests.plans.factories import demo
from usage.ingestion import Outcome, usage_record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def books(db: None) -> list[Invoice]:
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Acme GmbH", country="DE", billing_email="ap@acme.example")[0]
    globex = tenant_upsert(external_id="globex", name="Globex", currency="USD")[0]
    for tenant in (acme, globex):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="t", at=datetime(2026, 1, 1, tzinfo=UTC))
        subscription_roll(subscription_id=sub.pk, at=datetime(2026, 2, 20, tzinfo=UTC))
    credit_grant(tenant=globex, amount=Money(Decimal("15.00"), "USD"), reason="goodwill", actor="staff:ann")
    invoices_close_due(now=datetime(2026, 3, 1, tzinfo=UTC))
    finalized = list(Invoice.objects.exclude(status="draft").order_by("id"))
    assert len(finalized) >= 2
    key = api_key_create(name="svc", kind="service", scopes=["usage:write"], metrics=["ai_tokens"])
    with time_machine.travel(datetime(2026, 3, 1, tzinfo=UTC), tick=False):
        usage = usage_record(
            principal=ApiPrincipal.from_key(key.key),
            events=[
                {"tenant": "acme", "metric": "ai_tokens", "quantity": "5", "idempotency_key": f"u{n}"} for n in range(3)
            ],
        )
    assert all(r.outcome is Outcome.ACCEPTED for r in usage)
    invoice_mark_paid(invoice_id=finalized[0].pk, actor="staff:ann")
    credit_note_issue(invoice_id=finalized[0].pk, reason="outage", actor="staff:ann")
    chain_seal_all()
    return finalized


@pytest.fixture
def target() -> Iterator[str]:
    """A database that does not exist yet (restore creates it), dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_restored"
    admin = psycopg.conninfo.make_conninfo(conninfo(), dbname="postgres")
    drop = psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)
    yield psycopg.conninfo.make_conninfo(conninfo(), dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(drop)


def back_up(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    call_command("backup", "--output", str(tmp_path))
    (dump,) = tmp_path.glob("billing-*.dump")
    manifest = json.loads(dump.with_name(dump.name.removesuffix(".dump") + ".manifest.json").read_text())
    return dump, manifest


def test_the_drill_backs_up_restores_and_verifies_the_books(books, target, tmp_path, capsys):
    dump, manifest = back_up(tmp_path)
    assert manifest["row_counts"]["invoicing_invoice"] == Invoice.objects.count()
    series = {(s, y): n for s, y, n in manifest["number_series"]}
    assert series[("INV", 2026)] >= 2
    assert series[("CN", 2026)] == 1
    assert ["globex", "USD"] in [row[:2] for row in manifest["credit_ledger_balances"]]  # its grant, applied
    assert manifest["audit_chain_head"][0][0] > 0  # the sealed head: position, hash
    assert any(name == "invoicing_invoice_guard" for _, name, _ in manifest["triggers"])

    call_command("restore", str(dump), "--target", target, "--verify")
    assert "manifest matches, every invariant holds" in capsys.readouterr().out
    with psycopg.connect(target) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT number, total FROM invoicing_invoice WHERE number IS NOT NULL ORDER BY number")
        restored = cursor.fetchall()
    assert restored == [(i.number, i.total) for i in sorted(books, key=lambda i: str(i.number))]

    # restoring again over what is there now is refused: only into an empty database
    with pytest.raises(CommandError, match="not empty"):
        call_command("restore", str(dump), "--target", target, "--verify")


def test_a_damaged_dump_is_refused_before_anything_is_restored(books, target, tmp_path):
    dump, _ = back_up(tmp_path)
    content = bytearray(dump.read_bytes())
    content[len(content) // 2] ^= 0xFF
    dump.write_bytes(bytes(content))
    with pytest.raises(CommandError, match="damaged"):
        call_command("restore", str(dump), "--target", target, "--verify")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(target).close()


def test_a_restore_that_disagrees_with_its_manifest_says_where(books, target, tmp_path, capsys):
    dump, manifest = back_up(tmp_path)
    manifest["number_series"][0][2] += 1  # the books said one more number was handed out
    manifest_path = dump.with_name(dump.name.removesuffix(".dump") + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match="does not verify"):
        call_command("restore", str(dump), "--target", target, "--verify")
    assert "differs from the manifest: number_series" in capsys.readouterr().err


def test_the_invariants_find_books_edited_below_the_orm(books, target, tmp_path):
    dump, _ = back_up(tmp_path)
    call_command("restore", str(dump), "--target", target, "--verify")
    paid = books[0]
    with psycopg.connect(target, autocommit=True) as conn, conn.cursor() as cursor:
        assert broken_invariants(cursor) == {}
        cursor.execute("SET session_replication_role = replica")  # the triggers off, as an attacker would
        cursor.execute("UPDATE invoicing_invoice SET total = total + 1 WHERE id = %s", [paid.pk])
        cursor.execute(
            "DELETE FROM invoicing_invoiceline WHERE invoice_id = %s AND NOT EXISTS ("
            " SELECT 1 FROM invoicing_creditnoteline c WHERE c.invoice_line_id = invoicing_invoiceline.id)",
            [books[1].pk],
        )
        cursor.execute("UPDATE invoicing_invoicesequence SET last_number = last_number + 1 WHERE series = 'INV'")
        cursor.execute("DELETE FROM usage_usageeventkey WHERE idempotency_key = 'u1'")
        cursor.execute("SET session_replication_role = origin")
        cursor.execute("ALTER TABLE usage_usageevent DISABLE TRIGGER USER")
        broken = broken_invariants(cursor)
    assert set(broken) == {
        "a finalized invoice totals the sum of its lines, and its subtotal, tax and credit",
        "every series is gapless: numbers 1..last, each once",
        "append-only and chain triggers enabled",
        "every usage event has its idempotency key",
    }
    assert sorted(
        row[0] for row in broken["a finalized invoice totals the sum of its lines, and its subtotal, tax and credit"]
    ) == sorted([paid.number, books[1].number])


def test_the_embedded_engines_socket_is_where_the_backup_connects():
    """The embedded engine's DATABASE_URL (`?host=<socket folder>`) puts the folder in
    OPTIONS, not HOST: without it libpq reached the machine's default socket, another
    server, whose database of that name would have been backed up instead."""
    embedded = {"NAME": "billing", "USER": "postgres", "HOST": "", "PORT": "", "OPTIONS": {"host": "/srv/x/.data/pg"}}
    assert psycopg.conninfo.conninfo_to_dict(conninfo(embedded)) == {
        "dbname": "billing",
        "user": "postgres",
        "host": "/srv/x/.data/pg",
    }
    tcp = {"NAME": "billing", "USER": "u", "HOST": "db.internal", "PORT": 5433, "OPTIONS": {"host": "ignored"}}
    assert psycopg.conninfo.conninfo_to_dict(conninfo(tcp))["host"] == "db.internal"
