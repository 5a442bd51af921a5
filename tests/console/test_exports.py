"""CSV exports for accountants: streamed, a header row, one row per record, and their sums
per currency equal the overview's figures (console/selectors.py) and what the API says."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db.models.query import QuerySet
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from console import exports, selectors
from invoicing.models import CreditEntry
from tests.conftest import verified_login
from tests.console.ledger import T, at

pytestmark = [pytest.mark.django_db]
JANUARY = {"start": "2027-01-01", "end": "2027-01-31"}


@pytest.fixture
def finance() -> Client:
    user = User.objects.create_user("fin", password="x" * 16, is_staff=True)
    user.groups.add(Group.objects.get(name="finance"))
    client = Client()
    verified_login(client, User.objects.get(pk=user.pk))
    return client


def download(client: Client, what: str, **dates: str) -> tuple[StreamingHttpResponse, list[dict[str, str]], list[str]]:
    response = client.get(reverse("console:export"), {"what": what, **(dates or JANUARY)})
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    reader = csv.reader(io.StringIO(body))
    header = next(reader)
    return response, [dict(zip(header, row, strict=True)) for row in reader], header


def sums(rows: list[dict[str, str]], column: str, **where: str) -> dict[str, Decimal]:
    found: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if all(row[k] == v for k, v in where.items()):
            found[row["currency"]] += Decimal(row[column])
    return dict(found)


def figure(fig: selectors.Figure) -> dict[str, Decimal]:
    return {c: t.total.amount for c, t in fig.items()}


def test_the_invoices_csv_is_streamed_with_a_header_and_adds_up_to_invoiced(ledger, finance):
    response, rows, header = download(finance, "invoices")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="invoices-2027-01-01-to-2027-01-31.csv"'
    assert header[:6] == ["number", "finalized_at", "tenant", "tenant_name", "status", "currency"]
    assert len(rows) == 5  # i10 (void), i2, e1, j1, i3; the draft is not issued
    assert sums(rows, "total") == {"USD": Decimal("1530.00"), "EUR": Decimal("20.00"), "JPY": Decimal("75000")}
    assert sums(rows, "total") == figure(selectors.invoiced_this_month(now=T))
    i3 = next(r for r in rows if r["tenant"] == "bolt" and r["status"] == "open")
    assert (i3["subtotal"], i3["credit_applied"], i3["total"]) == ("300.00", "10.00", "290.00")
    assert i3["finalized_at"] == "2027-01-09T10:00:00Z"
    assert next(r for r in rows if r["currency"] == "JPY")["total"] == "75000"  # the currency's precision


def test_the_credit_notes_refunds_and_ledger_csvs_add_up_to_their_figures(ledger, finance):
    _, notes, _ = download(finance, "credit-notes")
    assert sums(notes, "total") == figure(selectors.credit_notes_this_month(now=T)) == {"USD": Decimal("300.00")}
    assert sorted(r["settlement"] for r in notes) == ["credit", "refund"]
    _, refunds, _ = download(finance, "refunds")
    assert sums(refunds, "amount") == figure(selectors.refunded_this_month(now=T)) == {"USD": Decimal("200.00")}
    assert [(r["stripe_refund"], r["method"], r["payout_reference"]) for r in refunds] == [("re_jan", "stripe", "")]
    _, entries, _ = download(finance, "credit-ledger")
    assert sums(entries, "amount", kind="grant") == figure(selectors.credits_granted_this_month(now=T))
    # all of January's entries: grants acme 100, bolt 10, then bolt's −10 applied to i3
    assert sums(entries, "amount") == {"USD": Decimal("100.00"), "EUR": Decimal("15.00"), "JPY": Decimal("1000")}


def test_a_range_of_days_includes_both_ends(ledger, finance):
    # 2026-12-31 alone holds i12 (23:59:59); 2027-01-01 alone holds i10 (00:00)
    _, rows, _ = download(finance, "invoices", start="2026-12-31", end="2026-12-31")
    assert [r["total"] for r in rows] == ["60.00"]
    _, rows, _ = download(finance, "invoices", start="2027-01-01", end="2027-01-01")
    assert [r["total"] for r in rows] == ["40.00"]
    _, rows, _ = download(finance, "invoices", start="2026-02-01", end="2027-01-31")
    total = sum((Decimal(r["total"]) for r in rows if r["currency"] == "USD"), Decimal(0))
    assert total == sum((m.totals["USD"].amount for m in selectors.revenue_by_month(now=T)), Decimal(0))


def test_the_exports_equal_what_the_api_says(ledger, finance, api, make_key):
    key = make_key("service", scopes=["billing:read"])
    start, end = at(2027, 1, 1), at(2027, 2, 1)
    api_invoiced: dict[str, Decimal] = defaultdict(Decimal)
    api_notes: dict[str, Decimal] = defaultdict(Decimal)
    api_balances: dict[str, Decimal] = defaultdict(Decimal)
    for tenant in ledger.tenants:
        listed = api.get(f"/api/v1/tenants/{tenant}/invoices", **key.header).json()["invoices"]
        for invoice in listed:
            if start <= datetime.fromisoformat(invoice["finalized_at"]) < end:
                api_invoiced[invoice["currency"]] += Decimal(invoice["total"])
            document = api.get(f"/api/v1/invoices/{invoice['number']}", **key.header).json()
            for note in document["credit_notes"]:
                if start <= datetime.fromisoformat(note["created_at"]) < end:
                    api_notes[document["currency"]] += Decimal(note["total"])
        billing = api.get(f"/api/v1/tenants/{tenant}/billing", **key.header).json()
        for currency, balance in billing["credit_balances"].items():
            api_balances[currency] += Decimal(balance)
    _, invoices, _ = download(finance, "invoices")
    assert sums(invoices, "total") == dict(api_invoiced)
    _, notes, _ = download(finance, "credit-notes")
    assert sums(notes, "total") == dict(api_notes)
    # the whole ledger, every entry ever written: the balances the API shows
    _, entries, _ = download(finance, "credit-ledger", start="2000-01-01", end="2027-01-31")
    assert sums(entries, "amount") == dict(api_balances)


def test_a_large_export_is_read_a_chunk_at_a_time_never_all_at_once(ledger, monkeypatch):
    tenant = ledger.tenants["gone"]
    CreditEntry.objects.bulk_create(
        CreditEntry(tenant=tenant, currency="USD", kind="grant", amount=Decimal("1.00"), reason="x", actor="t")
        for _ in range(250)
    )
    chunks: list[int] = []
    real_iterator = QuerySet.iterator

    def iterator(self: QuerySet[Any], chunk_size: int | None = None) -> Any:
        chunks.append(chunk_size or 0)
        return real_iterator(self, chunk_size=chunk_size)

    def refuse(self: QuerySet[Any]) -> None:
        raise AssertionError("an export loaded a whole queryset")

    monkeypatch.setattr(QuerySet, "iterator", iterator)
    monkeypatch.setattr(QuerySet, "_fetch_all", refuse)
    lines = exports.export_rows(name="credit-ledger", start=at(2027, 1, 1), end=at(2028, 1, 1), chunk_size=50)
    assert next(lines).startswith("entry,created_at,")
    assert chunks == []  # nothing read before the first row is asked for
    first = next(lines)
    assert chunks == [50]
    rest = list(lines)
    assert 1 + len(rest) == 5 + 250  # January's five entries and the 250 (created at T)
    assert first.count(",") >= 9


def test_text_a_spreadsheet_would_run_as_a_formula_is_defused(ledger, finance):
    from billing_project.money import Money
    from invoicing.ledger import credit_grant

    credit_grant(
        tenant=ledger.tenants["acme"], amount=Money(Decimal("1.00"), "USD"), reason='=HYPERLINK("x")', actor="s"
    )
    _, entries, _ = download(finance, "credit-ledger")
    assert '\'=HYPERLINK("x")' in [r["reason"] for r in entries]
    assert all(not r["amount"].startswith("'") for r in entries)  # −10.00 stays a number


def test_a_bad_range_is_refused_with_the_form(finance, db):
    response = finance.get(reverse("console:export"), {"what": "invoices", "start": "2027-02-01", "end": "2027-01-01"})
    assert response.status_code == 400
    assert b"The range ends before it starts." in response.content
    assert finance.get(reverse("console:export"), {"what": "secrets", **JANUARY}).status_code == 400
    for start, end in (("0001-01-01", "9999-12-31"), ("2027-01-01", "9999-12-31")):  # the calendar's edge
        response = finance.get(reverse("console:export"), {"what": "refunds", "start": start, "end": end})
        assert response.status_code == 400
        assert b"Days from 2000-01-01 to 2999-12-31." in response.content
