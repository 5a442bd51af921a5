"""A subscription's page and list show its status and period. Found: every field but the
tenant and the plan version is `editable=False`, so the read-only page showed only those."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from subscriptions.models import Subscription
from subscriptions.services import subscription_cancel, subscription_change_plan, subscription_create

pytestmark = [pytest.mark.django_db]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fields(html: str) -> dict[str, str]:
    """A read-only change page's fields: label → the text shown."""
    pairs = re.findall(r'<label>([^<]*):</label>\s*<div class="readonly">(.*?)</div>', html, re.S)
    return {label.strip(): re.sub(r"<[^>]+>", "", value).strip() for label, value in pairs}


def test_status_period_trial_and_start_at_the_top(admin_client, bigcorp):
    sub = subscription_create(tenant=bigcorp, plan_code="pro", actor="t", at=T0)  # a 14-day trial
    html = admin_client.get(f"/admin/subscriptions/subscription/{sub.pk}/change/").content.decode()
    shown = fields(html)
    assert list(shown)[:5] == ["Tenant", "Plan version", "Status", "Current period [start, end)", "Trial ends"]
    assert shown["Status"] == "Trialing"
    assert shown["Current period [start, end)"] == "[2026-01-01 00:00, 2026-01-15 00:00) UTC"
    assert shown["Trial ends"] == "2026-01-15 00:00 UTC"
    assert shown["Started"] == "2026-01-01 00:00 UTC"
    assert shown["Ended"] == "—"
    assert shown["At period end"] == "renews"


def test_a_scheduled_change_and_a_cancellation_show(admin_client, bigcorp):
    sub = subscription_create(tenant=bigcorp, plan_code="enterprise", actor="t", at=T0)
    subscription_change_plan(tenant=bigcorp, plan_code="pro", when="period_end", actor="t", at=T0)
    html = admin_client.get(f"/admin/subscriptions/subscription/{sub.pk}/change/").content.decode()
    assert fields(html)["At period end"] == "changes to pro v1 on 2027-01-01"

    subscription_cancel(tenant=bigcorp, at_period_end=True, actor="t", reason="moving on", at=T0)
    sub.refresh_from_db()
    assert sub.cancel_at_period_end
    html = admin_client.get(f"/admin/subscriptions/subscription/{sub.pk}/change/").content.decode()
    assert fields(html)["At period end"] == "cancels on 2027-01-01"


def test_the_list_shows_status_period_trial_and_what_comes(admin_client, bigcorp):
    subscription_create(tenant=bigcorp, plan_code="pro", actor="t", at=T0)
    html = admin_client.get("/admin/subscriptions/subscription/").content.decode()
    for column in ("status", "period", "trial", "at_period_end", "since"):
        assert f"column-{column}" in html, column
    assert "[2026-01-01, 2026-01-15)" in html  # days: the page shows the minutes
    assert Subscription.objects.count() == 1
