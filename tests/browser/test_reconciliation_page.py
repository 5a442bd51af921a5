"""The reconciliation report in a real browser (Debian's Chromium): an auditor logs in, finds
the day's mismatches from the finance overview, reads both sides of each, follows the link
to our invoice, downloads the CSV and opens an earlier day. Screenshots kept
(BROWSER_ARTIFACTS, else the test's tmp_path): look at them."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
import responses
import time_machine

from invoicing.providers import stripe_adapter
from invoicing.reconciliation import stripe_reconcile
from tests.browser.test_finance_console import browser, log_in, person  # noqa: F401
from tests.invoicing.stripe_account import StripeAccount
from tests.invoicing.test_reconciliation import NOW, REFUND, books  # noqa: F401
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, acme, recorded  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def stripe_api(settings, monkeypatch):  # the recorded Stripe, for the runs before the browser opens
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_LIVE_MODE = False
    monkeypatch.setattr(stripe_adapter, "MAX_NETWORK_RETRIES", 0)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(f"{API}/v1/account", json=recorded("account"))
        yield rsps


@pytest.fixture
def account(stripe_api):
    return StripeAccount(stripe_api)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BROWSER_ARTIFACTS") or tmp_path) / "reconciliation"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_an_auditor_reads_the_days_mismatches_and_downloads_them(live_server, browser, shots, books, account):  # noqa: F811
    with time_machine.travel(NOW.replace(day=9), tick=False):
        stripe_reconcile()  # the day before: everything matched
    account.objects["invoices"][STRIPE_INVOICE].update(total=4800)
    account.objects["refunds"][REFUND].update(status="failed", failure_reason="lost_or_stolen_card")
    account.add("charges", recorded("charge_partially_refunded", id="ch_stray", payment_intent="pi_stray"))
    with time_machine.travel(NOW, tick=False):
        stripe_reconcile()
    # the browser on the real clock: its cookies expire by it
    _, device = person("aud", "auditor")
    base = live_server.url
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
    )
    log_in(page, base, "aud", device)

    page.goto(f"{base}/admin/console/")
    waiting = page.locator("#waiting")
    assert "Reconciled with Stripe on 2026-01-10." in waiting.inner_text()
    page.screenshot(path=shots / "1-overview.png", full_page=True)
    waiting.locator("tr:has-text('Stripe mismatches') a").click()
    page.wait_for_url(f"{base}/admin/console/reconciliation/")
    page.screenshot(path=shots / "2-report.png", full_page=True)
    rows = page.locator("section:has(h2:text-is('Mismatches')) tbody tr")
    assert rows.count() == 3
    text = page.locator("#content-main").inner_text()
    assert "totals 49.00 USD, Stripe's 48.00 USD" in text
    assert "is submitted, Stripe's failed" in text
    assert "Stripe charged 49.00 USD (cus_TQ3mW2aXk9Lb1C) for no invoice of ours" in text
    stripe_links = [
        page.locator(f"a[href='https://dashboard.stripe.com/test/{p}']").count()
        for p in (f"invoices/{STRIPE_INVOICE}", f"refunds/{REFUND}", "payments/ch_stray")
    ]
    assert stripe_links == [1, 1, 1]

    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").click()
    saved = shots / "reconciliation.csv"
    download.value.save_as(saved)
    listed = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert sorted((r["object"], r["kind"]) for r in listed) == [
        ("charge", "unknown_at_stripe"),
        ("invoice", "amount"),
        ("refund", "status"),
    ]

    page.get_by_role("link", name="2026-01-09").click()
    page.wait_for_url(f"{base}/admin/console/reconciliation/?day=2026-01-09")
    assert "Everything matched" in page.locator("#content-main").inner_text()
    page.screenshot(path=shots / "3-earlier-day.png", full_page=True)

    page.goto(f"{base}/admin/console/reconciliation/?day=2026-01-10")
    page.locator("a", has_text="invoice INV-").first.click()
    page.wait_for_url(f"{base}/admin/invoicing/invoice/*/change/")
    page.screenshot(path=shots / "4-our-invoice.png", full_page=True)
    assert errors == []
