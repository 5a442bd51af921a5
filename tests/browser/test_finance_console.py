"""The finance console in a real browser (Playwright driving Debian's Chromium; never its
own download): finance logs in with a TOTP code, grants a credit, requests a refund above
the threshold; an approver logs in with hers, approves it; the refund succeeds at Stripe
(recorded responses, a real Celery worker) and the tenant page says so. Screenshots of
every step are kept (BROWSER_ARTIFACTS, else the test's tmp_path): look at them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import responses
from django.contrib.auth.models import Group, User
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from approvals.models import ApprovalRequest
from invoicing.models import CreditEntry, Refund
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.invoicing.stripe_refunds import StripeRefunds, paid_at_stripe
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "a-long-enough-password-1"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(f"Chromium is not at {CHROMIUM} (.ci/run installs Debian's chromium)")
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install chromium`, or set CHROMIUM")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls
    # between browser steps are plain synchronous code all the same
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BROWSER_ARTIFACTS") or tmp_path) / "finance-console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def person(name: str, group: str) -> tuple[User, TOTPDevice]:
    user = User.objects.create_user(name, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user, TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code(device: TOTPDevice) -> str:
    device.refresh_from_db()
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():0{device.digits}d}"


def log_in(page: Any, base: str, username: str, device: TOTPDevice) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.fill("#id_otp_token", code(device))
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def wait_for(predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


def test_credit_refund_above_the_threshold_approval_and_the_refund_succeeding(
    live_server, browser, shots, worker, settings
):
    settings.APPROVAL_THRESHOLDS = "USD:500"
    catalog_import(spec=catalog_validate(demo()))
    acme = tenant_upsert(external_id="acme", name="Acme Corp", currency="USD")[0]
    subscription_create(tenant=acme, plan_code="team", actor="test")
    invoice = paid_at_stripe(acme, amounts=("1200.00",))
    _, fin_device = person("fin", "finance")
    _, appr_device = person("appr", "finance-approver")
    base = live_server.url
    errors: list[str] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        stripe = StripeRefunds(rsps, status="succeeded")
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "response",
            lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None,
        )

        # finance: the tenant's page, a credit, a refund above the threshold
        log_in(page, base, "fin", fin_device)
        page.goto(f"{base}/admin/console/tenants/{acme.pk}/")
        page.screenshot(path=shots / "1-tenant.png", full_page=True)
        page.click("text=Grant credit")
        page.fill("#id_amount", "25.00")
        page.fill("#id_reason", "the outage of 12 March")
        page.screenshot(path=shots / "2-credit-form.png", full_page=True)
        page.click("input[type=submit]")
        assert "Granted 25.00 USD of credit." in page.inner_text(".messagelist")
        assert CreditEntry.objects.filter(tenant=acme, amount=Decimal("25.00"), actor="staff:fin").exists()
        page.click(f"#tp-invoices a[href$='refund/?invoice={invoice.pk}']")
        assert page.input_value("#id_amount") == "1200.00"  # what is left to refund
        page.fill("#id_amount", "600.00")
        page.fill("#id_reason", "cancelled within the first week")
        page.click("input[type=submit]")
        assert "Asked for approval" in page.inner_text(".messagelist")
        page.screenshot(path=shots / "3-refund-asked.png", full_page=True)
        refund = Refund.objects.get(invoice=invoice)
        assert refund.status == "awaiting_approval"
        assert stripe.creates() == []  # nothing reaches Stripe before a second person says so
        page.click("#logout-form button")  # a POST, as Django wants it
        page.wait_for_load_state()

        # the approver: the queue, the decision with a reason
        log_in(page, base, "appr", appr_device)
        page.goto(f"{base}/admin/approvals/approvalrequest/?status__exact=pending")
        page.screenshot(path=shots / "4-queue.png", full_page=True)
        request = ApprovalRequest.objects.get()
        page.check(f"input[name=_selected_action][value='{request.pk}']")
        page.select_option("select[name=action]", "approve")
        page.click("button[name=index]")
        page.fill("#id_reason", "checked the booking: cancelled in time")
        page.screenshot(path=shots / "5-approve.png", full_page=True)
        page.click("input[type=submit]")
        page.wait_for_load_state()
        request.refresh_from_db()
        assert (request.status, request.decided_by.username if request.decided_by else None) == ("approved", "appr")

        # the worker sends it to Stripe; Stripe says succeeded; the books are corrected
        wait_for(lambda: Refund.objects.get(pk=refund.pk).status == "succeeded")
        assert len(stripe.creates()) == 1
        page.goto(f"{base}/admin/console/tenants/{acme.pk}/")
        invoices = page.inner_text("#tp-invoices")
        assert "600.00 USD (Succeeded" in invoices
        assert "CN-" in invoices  # the refund's credit note
        page.screenshot(path=shots / "6-refunded.png", full_page=True)
    assert errors == [], errors  # no script error, no Content-Security-Policy violation
