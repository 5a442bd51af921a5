"""Reconciliation with Stripe (invoicing/reconciliation.py) against recorded Stripe
responses: dj-stripe's mirror synced through its own sync functions, then our invoices,
payments and refunds compared with it, one test per kind of mismatch; the report, its
failure record, its metric, its console pages and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from djstripe import models as mirror
from prometheus_client import generate_latest

from billing_project.models import TaskFailure
from billing_project.observability import StateCollector
from invoicing.collection import invoice_void
from invoicing.models import Invoice, Refund, StripeMismatch, StripeReconciliation
from invoicing.providers import ProviderUnavailable
from invoicing.reconciliation import stripe_reconcile, stripe_url
from invoicing.tasks import reconcile_with_stripe
from tests.conftest import verified_login
from tests.invoicing.stripe_account import StripeAccount
from tests.invoicing.stripe_refunds import paid_at_stripe
from tests.invoicing.test_stripe_adapter import (  # noqa: F401
    STRIPE_INVOICE,
    acme,
    finalized,
    ours,
    recorded,
    stripe_api,
)

pytestmark = pytest.mark.django_db

T = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)  # just after the recorded objects were made at Stripe
NOW = datetime(2026, 1, 10, 3, 30, tzinfo=UTC)  # the day's run
REFUND = "re_3SxZ00Qa7bC3dE4f"
K = StripeMismatch.Kind


@pytest.fixture
def account(stripe_api):  # noqa: F811
    return StripeAccount(stripe_api)


@pytest.fixture
def books(acme, account):  # noqa: F811
    """Ours and Stripe's agreeing: a 49.00 USD invoice paid at Stripe through its payment
    intent and charge, and 15.00 of it refunded (submitted, pending at Stripe)."""
    with time_machine.travel(T, tick=False):
        invoice = paid_at_stripe(acme)
        refund = submitted(invoice, at=T)
    account.add("customers", recorded("customer"))
    account.add("payment_intents", recorded("payment_intent"))
    account.add("charges", recorded("charge_partially_refunded"))
    account.add("invoices", ours(invoice, "invoice_paid"))
    account.add("refunds", recorded("refund_pending", metadata={"billing_refund_id": str(refund.pk)}))
    account.payments[STRIPE_INVOICE] = recorded("invoice_payment_list")["data"]
    return invoice, refund


def submitted(invoice: Invoice, *, at: datetime) -> Refund:
    """15.00 of the invoice refunded through Stripe, sent there and awaiting its answer."""
    return Refund.objects.create(
        invoice=invoice,
        tenant=invoice.tenant,
        amount=Decimal("15.00"),
        currency="USD",
        reason="customer asked",
        request_key="r1",
        requested_by="staff:ana",
        status=Refund.Status.SUBMITTED,
        stripe_refund_id=REFUND,
        submitted_at=at,
    )


def run() -> StripeReconciliation:
    with time_machine.travel(NOW, tick=False):
        return stripe_reconcile()


def found(report: StripeReconciliation) -> list[tuple[str, str, str]]:
    return [
        (m.object_type, m.kind, m.stripe_id) for m in report.mismatches.order_by("object_type", "kind", "stripe_id")
    ]


# ---------------------------------------------------------------- agreeing books
def test_agreeing_books_match_and_the_mirror_holds_stripes_objects(books, account):
    report = run()
    assert report.state == StripeReconciliation.State.MATCHED
    assert found(report) == []
    assert report.compared == {"invoices": 1, "paid_invoices": 1, "charges": 1, "refunds": 1}
    assert report.day.isoformat() == "2026-01-10"
    assert report.window_start == NOW - timedelta(days=35)
    # dj-stripe's own sync filled its mirror, links and all
    charge = mirror.Charge.objects.get(id="ch_3SxZ00Qa7bC3dE4f")
    assert charge.payment_intent_id == "pi_3SxZ00Qa7bC3dE4f"
    assert charge.customer_id == "cus_TQ3mW2aXk9Lb1C"
    assert mirror.Invoice.objects.get(id=STRIPE_INVOICE).stripe_data["status"] == "paid"
    assert mirror.Refund.objects.get(id=REFUND).charge_id == "ch_3SxZ00Qa7bC3dE4f"
    assert not TaskFailure.objects.exists()
    # the list asked Stripe for the window only
    (invoices,) = account.calls("/v1/invoices")
    assert f"created%5Bgte%5D={int((NOW - timedelta(days=35)).timestamp())}" in invoices.request.url


def test_objects_of_the_last_hour_wait_for_the_next_run(books, account):
    late = account.add(
        "invoices", recorded("invoice_open", id="in_late", created=int((NOW - timedelta(minutes=20)).timestamp()))
    )
    assert found(run()) == []
    assert mirror.Invoice.objects.filter(id=late["id"]).exists()  # mirrored, not compared yet


# ---------------------------------------------------------------- each kind of mismatch
def test_an_invoice_whose_total_stripe_changed(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(total=4800)
    report = run()
    assert found(report) == [("invoice", K.AMOUNT, STRIPE_INVOICE)]
    mismatch = report.mismatches.get()
    assert (mismatch.ours, mismatch.theirs, mismatch.invoice_id) == ("49.00 USD", "48.00 USD", books[0].pk)
    assert "totals 49.00 USD, Stripe's 48.00 USD" in mismatch.detail


def test_an_invoice_in_another_currency(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(currency="eur")
    assert found(run()) == [("invoice", K.CURRENCY, STRIPE_INVOICE)]


def test_an_invoice_stripe_voided_behind_our_back(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(status="void", amount_paid=0)
    report = run()
    assert found(report) == [("invoice", K.STATUS, STRIPE_INVOICE)]
    assert (report.mismatches.get().ours, report.mismatches.get().theirs) == ("paid", "void")


def test_an_invoice_stripe_does_not_have(books, account):
    del account.objects["invoices"][STRIPE_INVOICE]
    report = run()
    assert found(report) == [("invoice", K.MISSING_AT_STRIPE, STRIPE_INVOICE)]
    assert len(account.calls(f"/v1/invoices/{STRIPE_INVOICE}")) == 1  # asked by id before saying so


def test_an_invoice_older_than_the_window_is_fetched_by_id(books, account):
    """Ours paid in the window, Stripe's created before it: fetched, mirrored, compared."""
    account.objects["invoices"][STRIPE_INVOICE].update(created=int((NOW - timedelta(days=40)).timestamp()))
    assert found(run()) == []
    assert len(account.calls(f"/v1/invoices/{STRIPE_INVOICE}")) == 1


def test_an_invoice_at_stripe_that_is_none_of_ours(books, account):
    account.add("invoices", recorded("invoice_open", id="in_stranger", metadata={}))
    report = run()
    assert found(report) == [("invoice", K.UNKNOWN_AT_STRIPE, "in_stranger")]
    assert "is no invoice of ours" in report.mismatches.get().detail


def test_a_second_stripe_invoice_for_one_of_ours(books, account):
    account.add("invoices", ours(books[0], "invoice_open", id="in_second"))
    report = run()
    assert found(report) == [("invoice", K.DUPLICATE_AT_STRIPE, "in_second")]
    assert report.mismatches.get().invoice_id == books[0].pk


def test_a_payment_that_does_not_add_up(books, account):
    account.payments[STRIPE_INVOICE][0].update(amount_paid=4000)
    report = run()
    assert found(report) == [("payment", K.AMOUNT, STRIPE_INVOICE)]
    assert "payments of it add up to 40.00 USD" in report.mismatches.get().detail


def test_a_payment_in_another_currency(books, account):
    account.payments[STRIPE_INVOICE][0].update(currency="eur")
    assert found(run()) == [("payment", K.CURRENCY, STRIPE_INVOICE)]


def test_a_charge_for_no_invoice_of_ours(books, account):
    account.add("payment_intents", recorded("payment_intent", id="pi_stray"))
    account.add(
        "charges", recorded("charge_partially_refunded", id="ch_stray", payment_intent="pi_stray", amount_refunded=0)
    )
    report = run()
    assert found(report) == [("charge", K.UNKNOWN_AT_STRIPE, "ch_stray")]
    assert report.mismatches.get().detail == "Stripe charged 49.00 USD (cus_TQ3mW2aXk9Lb1C) for no invoice of ours"


def test_a_failed_charge_is_no_money_taken(books, account):
    account.add(
        "charges",
        recorded(
            "charge_partially_refunded",
            id="ch_failed",
            payment_intent="pi_3SxZ00Qa7bC3dE4f",
            status="failed",
            amount_refunded=0,
        ),
    )
    account.add(
        "charges",
        recorded(
            "charge_partially_refunded", id="ch_declined", payment_intent=None, status="failed", amount_refunded=0
        ),
    )
    assert found(run()) == []


def test_a_refund_of_another_amount(books, account):
    account.objects["refunds"][REFUND].update(amount=1000)
    report = run()
    assert found(report) == [("refund", K.AMOUNT, REFUND)]
    assert (report.mismatches.get().ours, report.mismatches.get().theirs) == ("15.00 USD", "10.00 USD")


def test_a_refund_in_another_currency(books, account):
    account.objects["refunds"][REFUND].update(currency="eur")
    assert found(run()) == [("refund", K.CURRENCY, REFUND)]


def test_a_refund_whose_status_says_otherwise(books, account):
    account.objects["refunds"][REFUND].update(status="failed", failure_reason="lost_or_stolen_card")
    report = run()
    assert found(report) == [("refund", K.STATUS, REFUND)]
    assert (report.mismatches.get().ours, report.mismatches.get().theirs) == ("submitted", "failed")


def test_a_refund_stripe_does_not_have(books, account):
    del account.objects["refunds"][REFUND]
    assert found(run()) == [("refund", K.MISSING_AT_STRIPE, REFUND)]


def test_a_refund_made_in_stripes_dashboard(books, account):
    account.add("refunds", recorded("refund", id="re_dashboard", metadata={}))
    assert found(run()) == [("refund", K.UNKNOWN_AT_STRIPE, "re_dashboard")]


def test_a_second_stripe_refund_for_one_of_ours(books, account):
    account.add("refunds", recorded("refund", id="re_again", metadata={"billing_refund_id": str(books[1].pk)}))
    report = run()
    assert found(report) == [("refund", K.DUPLICATE_AT_STRIPE, "re_again")]
    assert report.mismatches.get().refund_id == books[1].pk


def test_an_object_dj_stripe_cannot_mirror_is_named_not_missed(books, account):
    account.broken.add("txn_3SxZ02Qa7bC3dE4f")  # the refund's balance transaction
    report = run()
    assert found(report).count(("refund", K.NOT_MIRRORED, REFUND)) == 1  # once, not again as ours unfetched
    assert report.mirror_failures
    assert report.mirror_failures[0][0] == REFUND
    assert K.MISSING_AT_STRIPE not in {m.kind for m in report.mismatches.all()}


# ---------------------------------------------------------------- older than the window, still compared
OLD = NOW - timedelta(days=40)


@pytest.fixture
def old_open(acme, account):  # noqa: F811
    """An invoice of ours finalized 40 days ago and still open, at Stripe as one created then."""
    with time_machine.travel(OLD, tick=False):
        invoice = finalized(acme, amounts=("49.00",))
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=STRIPE_INVOICE)
    account.add("customers", recorded("customer"))
    account.add("invoices", ours(invoice, "invoice_open", created=int(OLD.timestamp())))
    return invoice


def test_an_old_open_invoice_voided_here_is_compared(old_open, account):
    assert found(run()) == []
    invoice_void(invoice_id=old_open.pk, reason="disputed", actor="staff:ana", at=NOW - timedelta(days=2))
    report = run()
    assert found(report) == [("invoice", K.STATUS, STRIPE_INVOICE)]  # Stripe may still charge it
    assert (report.mismatches.get().ours, report.mismatches.get().theirs) == ("void", "open")
    assert len(account.calls(f"/v1/invoices/{STRIPE_INVOICE}")) == 2  # fetched by id: older than the listing


def test_an_old_open_invoice_voided_or_paid_out_of_band_at_stripe(old_open, account):
    account.objects["invoices"][STRIPE_INVOICE].update(status="void")
    assert found(run()) == [("invoice", K.STATUS, STRIPE_INVOICE)]
    account.objects["invoices"][STRIPE_INVOICE].update(status="paid", amount_paid=4900)  # out of band
    assert found(run()) == [("invoice", K.STATUS, STRIPE_INVOICE), ("payment", K.AMOUNT, STRIPE_INVOICE)]


def test_an_old_submitted_refund_that_failed_at_stripe(acme, account):  # noqa: F811
    with time_machine.travel(OLD, tick=False):
        invoice = paid_at_stripe(acme)
        refund = submitted(invoice, at=OLD)
    account.add("customers", recorded("customer"))
    account.add("payment_intents", recorded("payment_intent", created=int(OLD.timestamp())))
    account.add("charges", recorded("charge_partially_refunded", created=int(OLD.timestamp())))
    failed = recorded("refund_failed", id=REFUND, created=int(OLD.timestamp()))
    account.add("refunds", {**failed, "metadata": {"billing_refund_id": str(refund.pk)}})
    assert ("refund", K.STATUS, REFUND) in found(run())


def test_a_stray_draft_deleted_at_stripe_is_no_longer_reported(books, account):
    made = int((NOW - timedelta(days=2)).timestamp())
    account.add("invoices", recorded("invoice_draft", id="in_stray", metadata={}, created=made))
    assert found(run()) == [("invoice", K.UNKNOWN_AT_STRIPE, "in_stray")]
    del account.objects["invoices"]["in_stray"]  # staff deleted it at Stripe; the mirror keeps its row
    assert found(run()) == []


def test_stripe_failing_while_dj_stripe_fetches_links_retries_the_run(books, account):
    account.unavailable = True  # balance transactions and payment methods answer 503
    with pytest.raises(ProviderUnavailable), time_machine.travel(NOW, tick=False):
        stripe_reconcile()
    assert not StripeReconciliation.objects.exists()  # no report of "mismatches" that are an outage


def test_links_to_stripe_follow_the_objects_kind(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(total=4800)
    account.add("charges", recorded("charge_partially_refunded", id="ch_stray", payment_intent="pi_stray"))
    report = run()
    links = {m.stripe_id: stripe_url(m) for m in report.mismatches.all()}
    assert links == {
        STRIPE_INVOICE: f"https://dashboard.stripe.com/test/invoices/{STRIPE_INVOICE}",
        "ch_stray": "https://dashboard.stripe.com/test/payments/ch_stray",
    }


def test_several_at_once_are_all_reported(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(total=4800)
    account.objects["refunds"][REFUND].update(amount=1000)
    account.add("invoices", recorded("invoice_open", id="in_stranger", metadata={}))
    assert [k for _, k, _ in found(run())] == [K.AMOUNT, K.UNKNOWN_AT_STRIPE, K.AMOUNT]


# ---------------------------------------------------------------- the report, its failure record, its metric
def test_mismatches_open_a_failure_record_that_a_clean_rerun_resolves(books, account):
    account.objects["refunds"][REFUND].update(amount=1000)
    run()
    failure = TaskFailure.objects.get(task_id="stripe-reconciliation-2026-01-10")
    assert failure.resolved_at is None
    assert failure.task_name == "invoicing.tasks.reconcile_with_stripe"
    assert failure.message == "1 mismatches with Stripe on 2026-01-10: 1 refund amount"
    account.objects["refunds"][REFUND].update(amount=1500)  # staff fixed it at Stripe
    report = run()
    assert report.state == StripeReconciliation.State.MATCHED
    assert found(report) == []
    assert StripeReconciliation.objects.count() == 1  # the day's report, replaced
    failure.refresh_from_db()
    assert failure.resolved_at is not None


def test_stripe_out_of_reach_writes_no_report(books, account):
    account.down = True
    with pytest.raises(ProviderUnavailable), time_machine.travel(NOW, tick=False):
        stripe_reconcile()
    assert not StripeReconciliation.objects.exists()


def test_the_metric_says_the_last_reports_mismatches_by_kind(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(total=4800)
    account.add("invoices", recorded("invoice_open", id="in_stranger", metadata={}))
    run()
    text = generate_latest(StateCollector()).decode()
    assert 'billing_reconciliation_mismatches{kind="amount",object="invoice"} 1.0' in text
    assert 'billing_reconciliation_mismatches{kind="unknown_at_stripe",object="invoice"} 1.0' in text
    assert 'billing_reconciliation_mismatches{kind="status",object="refund"} 0.0' in text
    (stamp,) = [line for line in text.splitlines() if line.startswith("billing_reconciliation_last_run_timestamp")]
    assert float(stamp.split()[1]) == NOW.timestamp(), stamp


def test_the_beat_task_runs_it_when_collection_is_on(books, account, settings):
    settings.STRIPE_COLLECTION_ENABLED = False
    with time_machine.travel(NOW, tick=False):
        assert reconcile_with_stripe.apply().get() == 0
    assert not StripeReconciliation.objects.exists()  # off: nothing at Stripe to compare with
    settings.STRIPE_COLLECTION_ENABLED = True
    account.objects["refunds"][REFUND].update(amount=1000)
    with time_machine.travel(NOW, tick=False):
        assert reconcile_with_stripe.apply().get() == 1
    assert settings.CELERY_BEAT_SCHEDULE["reconcile-with-stripe"]["task"] == "invoicing.tasks.reconcile_with_stripe"


# ---------------------------------------------------------------- the console pages and CSV
def staff(role: str) -> Client:
    user = User.objects.create_user(f"{role}-user", password="x" * 16, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    verified_login(client, User.objects.get(pk=user.pk))
    return client


@pytest.fixture
def mismatched(books, account):
    account.objects["invoices"][STRIPE_INVOICE].update(total=4800)
    account.add("refunds", recorded("refund", id="re_dashboard", metadata={}))
    return run()


def test_the_days_page_lists_each_mismatch_with_both_sides(mismatched):
    client = staff("finance")
    latest = client.get("/admin/console/reconciliation/")
    assert latest.status_code == 200
    assert b"2026-01-10" in latest.content
    assert b"2 mismatches" in latest.content
    page = client.get("/admin/console/reconciliation/?day=2026-01-10")
    assert page.status_code == 200
    html = page.content.decode()
    invoice = Invoice.objects.get(stripe_invoice_id=STRIPE_INVOICE)
    assert f"/admin/invoicing/invoice/{invoice.pk}/change/" in html
    assert f"https://dashboard.stripe.com/test/invoices/{STRIPE_INVOICE}" in html
    assert "https://dashboard.stripe.com/test/refunds/re_dashboard" in html
    assert "totals 49.00 USD, Stripe&#x27;s 48.00 USD" in html


def test_the_days_csv(mismatched):
    response = staff("auditor").get("/admin/console/reconciliation/csv/?day=2026-01-10")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["object"], r["kind"], r["stripe_id"]) for r in rows] == [
        ("invoice", "amount", STRIPE_INVOICE),
        ("refund", "unknown_at_stripe", "re_dashboard"),
    ]
    assert rows[0]["ours"] == "49.00 USD"
    assert rows[0]["stripe_url"].endswith(STRIPE_INVOICE)


def test_support_does_not_see_the_reconciliation(mismatched):
    client = staff("support")
    assert client.get("/admin/console/reconciliation/").status_code == 403
    assert client.get("/admin/console/reconciliation/csv/?day=2026-01-10").status_code == 403


def test_a_day_without_a_report_is_404(mismatched):
    client = staff("finance")
    assert client.get("/admin/console/reconciliation/?day=2026-01-09").status_code == 404
    assert client.get("/admin/console/reconciliation/?day=2026-13-40").status_code == 404
    assert client.get("/admin/console/reconciliation/csv/?day=nonsense").status_code == 404


# ---------------------------------------------------------------- by hand
def test_the_command_prints_what_it_found_and_where(books, account, settings, capsys):
    settings.STRIPE_COLLECTION_ENABLED = True
    account.objects["refunds"][REFUND].update(amount=1000)
    with time_machine.travel(NOW, tick=False):
        call_command("reconcile_stripe")
    out = capsys.readouterr().out
    assert "2026-01-10: 1 mismatches (1 invoices, 1 paid invoices' payments, 1 charges, 1 refunds compared)" in out
    assert "  1 refund amount" in out
    assert "report: /admin/console/reconciliation/?day=2026-01-10" in out


def test_the_command_says_when_there_is_nothing_to_compare_or_stripe_is_down(books, account, settings, capsys):
    settings.STRIPE_COLLECTION_ENABLED = False
    call_command("reconcile_stripe")
    assert "skipped: collection at Stripe is off" in capsys.readouterr().out
    settings.STRIPE_COLLECTION_ENABLED = True
    account.down = True
    with pytest.raises(CommandError, match="no report: Stripe could not be reached"), time_machine.travel(NOW):
        call_command("reconcile_stripe")
    assert not StripeReconciliation.objects.exists()
