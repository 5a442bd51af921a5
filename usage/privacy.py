"""What usage holds about a tenant, for its data export: usage summarised per metric and
billing period (the raw events hold no personal data: only declared properties)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import connection

from billing_project.money import format_decimal
from subscriptions.models import Tenant

SUMMARY = """
SELECT m.code, p.start, p."end", count(e.id), coalesce(sum(e.quantity), 0)
FROM subscriptions_billingperiod p
JOIN subscriptions_subscription s ON s.id = p.subscription_id
JOIN usage_usageevent e ON e.tenant_id = s.tenant_id AND e.occurred_at >= p.start AND e.occurred_at < p."end"
JOIN plans_billablemetric m ON m.id = e.metric_id
WHERE s.tenant_id = %s
GROUP BY m.code, p.start, p."end" ORDER BY p.start, m.code
"""
OUTSIDE = """
SELECT m.code, count(e.id), coalesce(sum(e.quantity), 0), min(e.occurred_at), max(e.occurred_at)
FROM usage_usageevent e JOIN plans_billablemetric m ON m.id = e.metric_id
WHERE e.tenant_id = %s AND NOT EXISTS (
    SELECT 1 FROM subscriptions_billingperiod p JOIN subscriptions_subscription s ON s.id = p.subscription_id
    WHERE s.tenant_id = e.tenant_id AND e.occurred_at >= p.start AND e.occurred_at < p."end")
GROUP BY m.code ORDER BY m.code
"""


def usage_summary(tenant: Tenant) -> Iterator[dict[str, Any]]:
    """Per metric and billing period: how many events and their total quantity; events that
    fall in no period (before the first, after the last) are summarised per metric."""
    with connection.cursor() as cursor:
        cursor.execute(SUMMARY, [tenant.pk])
        for code, start, end, events, quantity in cursor.fetchall():
            yield {
                "metric": code,
                "period": {"start": start, "end": end},
                "events": events,
                "quantity": format_decimal(quantity),
            }
        cursor.execute(OUTSIDE, [tenant.pk])
        for code, events, quantity, first, last in cursor.fetchall():
            yield {
                "metric": code,
                "period": None,
                "events": events,
                "quantity": format_decimal(quantity),
                "first_at": first,
                "last_at": last,
            }
