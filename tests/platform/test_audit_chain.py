"""The tamper-evident audit chain (billing_project/chain.py): every audit entry and financial
record is linked by a trigger and sealed into one chain; `manage.py audit verify` finds an
edit, a deletion or an insertion made below the ORM with the triggers off, as an attacker
with database access would, and names the first broken link."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from billing_project.chain import chain_record_head, chain_seal_all, chain_verify, chained_tables, link_hash
from billing_project.models import ChainHead, ChainLink
from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import CreditEntry, Invoice
from invoicing.services import credit_note_issue, invoice_finalize, invoice_mark_paid
from tests.invoicing.test_invariants import acme as acme  # noqa: PLC0414 - the fixture
from tests.invoicing.test_invariants import draft

CHAINED = {
    "auditlog_logentry",
    "subscriptions_subscriptionevent",
    "invoicing_invoice",
    "invoicing_creditentry",
    "invoicing_creditnote",
    "invoicing_creditnoteline",
    "invoicing_refund",
    "approvals_approvalrequest",
    "privacy_erasure",
}


def below_the_orm(sql: str, params: list[Any]) -> None:
    """As an attacker with database access: every trigger off (guards and chain alike)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


@pytest.fixture
def books(acme):
    invoice = invoice_mark_paid(invoice_id=invoice_finalize(invoice_id=draft(acme, "49.00").pk).pk)
    credit_note_issue(invoice_id=invoice.pk, reason="outage", actor="staff:ann")
    credit_grant(tenant=acme, amount=Money(Decimal("5.00"), "USD"), reason="goodwill", actor="staff:ann")
    return invoice


def verify_command(*heads: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("audit", "verify", *[f"--head={h}" for h in heads], stdout=out, stderr=out)
    return out.getvalue()


@pytest.mark.django_db
def test_every_financial_table_is_chained_and_a_clean_chain_verifies(books):
    assert {t.table_name for t in chained_tables()} == CHAINED
    linked = set(ChainLink.objects.values_list("table_name", flat=True))
    assert {"invoicing_invoice", "invoicing_creditentry", "invoicing_creditnote", "auditlog_logentry"} <= linked
    # a draft is not chained; finalizing it and paying it are, each a link
    assert ChainLink.objects.filter(table_name="invoicing_invoice", row_id=str(books.pk)).count() == 2
    assert chain_seal_all() == ChainLink.objects.count()
    verdict = chain_verify()
    assert verdict.ok, verdict.broken
    assert verdict.unsealed == 0
    assert verdict.links == ChainLink.objects.count()
    assert "audit chain intact" in verify_command()


@pytest.mark.django_db
def test_sealed_links_follow_one_another(books):
    chain_seal_all()
    prev = "0" * 64
    for link in ChainLink.objects.order_by("position"):
        assert link.prev_hash == prev
        assert link.link_hash == link_hash(prev, link.table_name, link.row_id, link.content_hash)
        prev = link.link_hash
    assert chain_seal_all() == 0  # sealed once


@pytest.mark.django_db
def test_an_edit_below_the_orm_is_found_and_named(books):
    chain_seal_all()
    entry = CreditEntry.objects.filter(reason="goodwill").get()
    link = ChainLink.objects.filter(table_name="invoicing_creditentry", row_id=str(entry.pk)).get()
    below_the_orm("UPDATE invoicing_creditentry SET amount = 500 WHERE id = %s", [entry.pk])
    verdict = chain_verify()
    assert (
        verdict.broken[0] == f"link {link.position}: invoicing_creditentry #{entry.pk} was changed after it was linked"
    )
    with pytest.raises(CommandError, match=f"first at link {link.position}: invoicing_creditentry"):
        verify_command()


@pytest.mark.django_db
def test_a_finalized_invoice_edited_below_the_orm_is_found(books):
    chain_seal_all()
    below_the_orm("UPDATE invoicing_invoice SET total = 4.90 WHERE id = %s", [books.pk])
    newest = ChainLink.objects.filter(table_name="invoicing_invoice", row_id=str(books.pk)).order_by("-id")[0]
    assert f"link {newest.position}: invoicing_invoice #{books.pk} was changed after it was linked" in (
        chain_verify().broken
    )


@pytest.mark.django_db
def test_a_deleted_row_and_a_row_slipped_in_are_found(books):
    chain_seal_all()
    entry = CreditEntry.objects.filter(reason="goodwill").get()
    below_the_orm("DELETE FROM invoicing_creditentry WHERE id = %s", [entry.pk])
    below_the_orm(
        "INSERT INTO invoicing_creditentry (tenant_id, kind, amount, currency, reason, actor, created_at) "
        "SELECT tenant_id, kind, 1000, currency, 'slipped in', actor, created_at FROM invoicing_creditentry "
        "WHERE id = (SELECT min(id) FROM invoicing_creditentry) RETURNING id",
        [],
    )
    slipped = CreditEntry.objects.get(reason="slipped in")
    broken = chain_verify().broken
    assert any(m.endswith(f"invoicing_creditentry #{entry.pk} is gone") for m in broken)
    assert f"no link: invoicing_creditentry #{slipped.pk} was written without one" in broken


@pytest.mark.django_db
def test_a_rewritten_link_breaks_the_chain_after_it(books):
    chain_seal_all()
    victim = ChainLink.objects.order_by("position")[2]
    below_the_orm("UPDATE billing_project_chainlink SET content_hash = %s WHERE id = %s", ["f" * 64, victim.pk])
    assert chain_verify().broken[0].startswith(f"link {victim.position}: its hash does not follow")


@pytest.mark.django_db
def test_a_chain_recomputed_whole_is_caught_by_a_head_kept_elsewhere(books):
    head = chain_record_head()
    assert head is not None
    assert ChainHead.objects.count() == 1
    kept = f"{head.position}:{head.link_hash}"
    # the attacker edits a row and recomputes every link after it, and the recorded heads too
    entry = CreditEntry.objects.filter(reason="goodwill").get()
    below_the_orm("UPDATE invoicing_creditentry SET amount = 500 WHERE id = %s", [entry.pk])
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TimeZone = 'UTC'")
        cursor.execute("SELECT billing_chain_hash(to_jsonb(t)) FROM invoicing_creditentry t WHERE id = %s", [entry.pk])
        forged = cursor.fetchone()[0]
    prev = "0" * 64
    for link in ChainLink.objects.order_by("position"):
        content = (
            forged if (link.table_name, link.row_id) == ("invoicing_creditentry", str(entry.pk)) else link.content_hash
        )
        new = link_hash(prev, link.table_name, link.row_id, content)
        below_the_orm(
            "UPDATE billing_project_chainlink SET content_hash = %s, prev_hash = %s, link_hash = %s WHERE id = %s",
            [content, prev, new, link.pk],
        )
        prev = new
    below_the_orm("DELETE FROM billing_project_chainhead", [])
    assert chain_verify().ok  # consistent inside the database…
    with pytest.raises(CommandError, match=f"link {head.position}: differs from the head recorded for it"):
        verify_command(kept)  # …but not with the head kept outside it


@pytest.mark.django_db
def test_links_are_append_only_and_sealed_once(books):
    chain_seal_all()
    link = ChainLink.objects.order_by("position")[0]
    for sql in (
        "UPDATE billing_project_chainlink SET content_hash = 'x' WHERE id = %s",
        "UPDATE billing_project_chainlink SET position = position + 1000 WHERE id = %s",
        "DELETE FROM billing_project_chainlink WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as c:
            c.execute(sql, [link.pk])


@pytest.mark.django_db
def test_bookkeeping_columns_make_no_link(books):
    before = ChainLink.objects.count()
    Invoice.objects.filter(pk=books.pk).update(collection_attempts=7)  # a retry counter
    assert ChainLink.objects.count() == before
    with pytest.raises(CommandError, match="POSITION:SHA256"):
        verify_command("12:nothex")


@pytest.mark.django_db
def test_the_beat_jobs_seal_and_record_a_head(books):
    from django.conf import settings

    from billing_project.tasks import record_audit_chain_head, seal_audit_chain

    schedule = {e["task"]: e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["billing_project.tasks.seal_audit_chain"] == 60.0  # sealed every minute
    assert schedule["billing_project.tasks.record_audit_chain_head"] == 86400.0  # a head a day

    assert seal_audit_chain.apply().get() > 0
    record_audit_chain_head.apply().get()
    head = ChainHead.objects.get()
    assert head.position == ChainLink.objects.order_by("-position")[0].position


@pytest.mark.django_db
def test_a_chain_trigger_turned_off_is_reported(books):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no deferred checks pending on the table
        cursor.execute("ALTER TABLE invoicing_creditentry DISABLE TRIGGER invoicing_creditentry_chain")
    assert "no link: invoicing_creditentry's chain trigger is disabled" in chain_verify().broken
    invoices = next(t for t in chained_tables() if t.table_name == "invoicing_invoice")
    assert invoices.condition == "t.status <> 'draft'"
    assert "collection_attempts" in invoices.excluded
