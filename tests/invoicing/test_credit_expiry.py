"""Credit that expires: the grant that expires first is used first, what is left of it is
written off when it expires (by the hourly job, or by the next invoice that would have used
it), balances never count it meanwhile, and credit a voided invoice gives back to an expired
grant expires again. Raced: the job and finalizations at once write one expiry."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from approvals.kinds import kind_for
from billing_project.errors import InvalidRequest
from billing_project.money import Money
from invoicing.collection import invoice_void
from invoicing.ledger import credit_balance, credit_grant, credit_lots, credits_expire_due
from invoicing.models import CreditEntry, Invoice, InvoiceLine
from invoicing.services import invoice_finalize
from plans.services import catalog_import, catalog_validate
from subscriptions.services import tenant_upsert
from tests.clock import NOW
from tests.plans.factories import demo
from tests.subscriptions.test_races import race

DAY = timedelta(days=1)


@pytest.fixture
def acme(db, clock):
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def grant(tenant, amount: str, expires_in: timedelta | None = None) -> CreditEntry:
    expires_at = NOW + expires_in if expires_in is not None else None
    return credit_grant(tenant=tenant, amount=usd(amount), reason="goodwill", actor="staff:ann", expires_at=expires_at)


def finalized(tenant, amount: str) -> Invoice:
    invoice = Invoice.objects.create(tenant=tenant, currency="USD", period_start=NOW, period_end=NOW)
    InvoiceLine.objects.create(
        invoice=invoice, position=1, kind="base_fee", description="fee", amount=Decimal(amount), currency="USD"
    )
    return invoice_finalize(invoice_id=invoice.pk)


def expiries(tenant) -> list[tuple[int, Decimal]]:
    rows = CreditEntry.objects.filter(tenant=tenant, kind="expiry").order_by("pk")
    return list(rows.values_list("expired_grant_id", "amount"))


@pytest.mark.django_db
def test_the_credit_that_expires_first_is_used_first(acme, clock):
    lasting = grant(acme, "10.00")
    later = grant(acme, "10.00", expires_in=30 * DAY)
    sooner = grant(acme, "10.00", expires_in=5 * DAY)
    assert finalized(acme, "15.00").credit_applied == Decimal("15.00")
    left = {lot.entry_id: lot.remaining for lot in credit_lots(tenant_id=acme.pk, currency="USD")}
    assert left == {later.pk: Decimal("5.00"), lasting.pk: Decimal("10.00")}  # sooner used up, then later

    clock.shift(31 * DAY)
    assert credit_balance(tenant=acme, currency="USD") == Decimal("10.00")  # later's 5.00 no longer counts
    assert credits_expire_due(now=NOW + 31 * DAY) == 1
    assert expiries(acme) == [(later.pk, Decimal("-5.00"))]
    assert sooner.pk not in dict(expiries(acme))  # nothing left of it to expire
    assert credit_balance(tenant=acme, currency="USD") == Decimal("10.00")


@pytest.mark.django_db
def test_unused_credit_expires_once_and_is_not_used_after(acme, clock):
    entry = grant(acme, "15.00", expires_in=DAY)
    assert finalized(acme, "10.00").credit_applied == Decimal("10.00")
    assert credit_balance(tenant=acme, currency="USD") == Decimal("5.00")

    clock.shift(DAY)  # the instant it expires: gone
    assert credit_balance(tenant=acme, currency="USD") == 0
    assert finalized(acme, "10.00").credit_applied == 0  # the invoice wrote it off itself, the job had not run
    assert expiries(acme) == [(entry.pk, Decimal("-5.00"))]
    assert credits_expire_due(now=NOW + 2 * DAY) == 0  # run again: nothing more
    assert expiries(acme) == [(entry.pk, Decimal("-5.00"))]
    assert credit_balance(tenant=acme, currency="USD") == 0


@pytest.mark.django_db
def test_credit_a_voided_invoice_gives_back_to_an_expired_grant_expires_again(acme, clock):
    expiring = grant(acme, "10.00", expires_in=3 * DAY)
    invoice = finalized(acme, "25.00")  # 10.00 credit, 15.00 open
    assert (invoice.credit_applied, invoice.status) == (Decimal("10.00"), "open")
    clock.shift(5 * DAY)
    credits_expire_due(now=NOW + 5 * DAY)
    assert expiries(acme) == []  # the invoice used all of it

    invoice_void(invoice_id=invoice.pk, reason="billed in error", actor="staff:ann")
    assert expiries(acme) == [(expiring.pk, Decimal("-10.00"))]  # given back, and expired at once
    assert credit_balance(tenant=acme, currency="USD") == 0


@pytest.mark.django_db
def test_credit_given_back_before_its_expiry_keeps_its_expiry(acme, clock):
    expiring = grant(acme, "10.00", expires_in=3 * DAY)
    lasting = grant(acme, "4.00")
    invoice = finalized(acme, "30.00")  # uses both: 10.00 expiring first, then 4.00
    assert invoice.credit_applied == Decimal("14.00")
    invoice_void(invoice_id=invoice.pk, reason="billed in error", actor="staff:ann")
    lots = {lot.entry_id: (lot.remaining, lot.expires_at) for lot in credit_lots(tenant_id=acme.pk, currency="USD")}
    assert lots == {expiring.pk: (Decimal("10.00"), NOW + 3 * DAY), lasting.pk: (Decimal("4.00"), None)}
    clock.shift(3 * DAY)
    assert credits_expire_due(now=NOW + 3 * DAY) == 1
    assert credit_balance(tenant=acme, currency="USD") == Decimal("4.00")


@pytest.mark.django_db
def test_an_expiry_is_an_instant_in_the_future(acme):
    for expires_at in (NOW, NOW - DAY, (NOW + DAY).replace(tzinfo=None)):
        with pytest.raises(InvalidRequest) as refused:
            credit_grant(tenant=acme, amount=usd("1.00"), reason="x", actor="a", expires_at=expires_at)
        assert refused.value.code == "validation_error"
    assert not CreditEntry.objects.exists()


@pytest.mark.django_db
def test_the_database_keeps_expiry_to_grants(acme):
    entry = grant(acme, "5.00", expires_in=DAY)
    bad = (
        {"kind": "expiry", "amount": Decimal("-1.00")},  # names no grant
        {"kind": "expiry", "amount": Decimal("1.00"), "expired_grant": entry},  # adds credit
        {"kind": "reversal", "amount": Decimal("1.00"), "expires_at": NOW + DAY},  # only grants expire
        {"kind": "grant", "amount": Decimal("1.00"), "expired_grant": entry},  # only expiries name a grant
    )
    for fields in bad:
        with pytest.raises(IntegrityError), transaction.atomic():
            CreditEntry.objects.create(tenant=acme, currency="USD", reason="x", actor="a", **fields)


@pytest.mark.django_db(transaction=True)
def test_the_job_and_invoices_racing_at_expiry_write_one_expiry(acme, clock):
    entry = grant(acme, "50.00", expires_in=DAY)
    drafts = []
    for _ in range(3):
        invoice = Invoice.objects.create(tenant=acme, currency="USD", period_start=NOW, period_end=NOW)
        InvoiceLine.objects.create(
            invoice=invoice, position=1, kind="base_fee", description="fee", amount=Decimal("10.00"), currency="USD"
        )
        drafts.append(invoice.pk)
    clock.shift(DAY)
    lock, jobs = threading.Lock(), [None, None, None, *drafts]  # three jobs, three finalizations

    def act() -> object:
        with lock:
            draft = jobs.pop()
        return credits_expire_due(now=NOW + DAY) if draft is None else invoice_finalize(invoice_id=draft)

    _, errors = race(act, 6)
    assert errors == []
    assert expiries(acme) == [(entry.pk, Decimal("-50.00"))]
    assert set(Invoice.objects.values_list("credit_applied", flat=True)) == {Decimal(0)}
    assert credit_balance(tenant=acme, currency="USD") == 0


@pytest.mark.django_db
def test_a_credit_approval_carries_its_expiry(acme):
    kind = kind_for("credit")
    cleaned = kind.clean(acme, {"amount": "20", "currency": "usd", "expires_at": "2030-01-01T10:00:00+02:00"})
    assert cleaned == {"amount": "20", "currency": "USD", "expires_at": "2030-01-01T08:00:00Z"}
    assert "expires_at" not in kind.clean(acme, {"amount": "20"})
    for bad in ("tomorrow", "2030-01-01T10:00:00"):
        with pytest.raises(InvalidRequest) as refused:
            kind.clean(acme, {"amount": "20", "expires_at": bad})
        assert "payload.expires_at" in refused.value.details["fields"]
    plan = kind.validate(acme, {"amount": "20", "expires_at": (NOW + DAY).isoformat()})
    assert "it expires" in plan.description
    assert not CreditEntry.objects.exists()  # a dry run
