"""The metrics the alert rules read (ops/prometheus/billing.rules.yml; the rules themselves are
unit-tested by promtool in `make alert-rules`): every one is served at /metrics, and the state
read at scrape time tells the truth about the database it reads."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.db.models.functions import Now
from django.utils import timezone
from prometheus_client.core import Metric

from billing_project.models import WorkItem
from billing_project.observability import STATE_READERS
from plans.models import BillableMetric
from plans.services import catalog_import, catalog_validate
from subscriptions.models import SubscriptionEvent
from subscriptions.services import DUNNING_SUSPENSION, subscription_create, tenant_upsert
from tests.plans.factories import demo
from usage.models import UsageEvent
from webhooks.models import StripeEvent

pytestmark = [pytest.mark.django_db]

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus" / "billing.rules.yml"


def scrape(client: Any, settings: Any) -> str:
    settings.METRICS_TOKEN = "scrape-me"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert response.status_code == 200
    return str(response.content.decode())


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of `name` with these labels (labels in any order)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if found == labels:
            return float(match.group(2))
    raise AssertionError(f"no sample {name}{labels} in the scrape")


def test_every_metric_the_alert_rules_read_is_served(client, settings):
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    read = {name for rule in rules for name in re.findall(r"\bbilling_[a-z_]+", rule["expr"])}
    assert len(rules) >= 12
    client.get("/healthz")  # a request counted, so the labelled request counter has a sample
    text = scrape(client, settings)
    served = set(re.findall(r"^# TYPE (billing_[a-z_]+) ", text, flags=re.MULTILINE))
    # a counter is declared without its _total; the rules read the sample's name
    served |= {f"{name}_total" for name in served}
    assert read <= served, sorted(read - served)


def test_the_state_read_at_scrape_time_is_the_databases(client, settings):
    catalog_import(spec=catalog_validate(demo()))
    tenant = tenant_upsert(external_id="acme", name="Acme")[0]
    subscription = subscription_create(tenant=tenant, plan_code="pro", actor="t")
    text = scrape(client, settings)
    assert sample(text, "billing_webhook_events_pending") == 0
    assert sample(text, "billing_webhook_oldest_pending_seconds") == 0
    assert sample(text, "billing_usage_aggregation_lag_seconds") == 0
    assert sample(text, "billing_dunning_suspensions_last_hour") == 0
    assert sample(text, "billing_readiness", check="database") == 1
    assert sample(text, "billing_readiness", check="redis") == 1

    now = timezone.now()
    WorkItem.objects.create(
        job="invoicing.collect",
        object_id=1,
        subject="INV-1",
        state="blocked",
        attempts=5,
        first_failed_at=now,
        last_failed_at=now,
        blocked_at=now,
        blocked_reason="card declined five times",
    )
    WorkItem.objects.create(
        job="invoicing.collect",
        object_id=2,
        subject="INV-2",
        attempts=1,
        next_attempt_at=now,
        first_failed_at=now,
        last_failed_at=now,
    )
    for n, minutes in enumerate((20, 3)):  # received 20 and 3 minutes ago, on the database's clock
        StripeEvent.objects.create(
            stripe_id=f"evt_{n}",
            type="invoice.paid",
            livemode=False,
            created=now,
            payload={"id": f"evt_{n}"},
            received_at=Now() - timedelta(minutes=minutes),
        )
    StripeEvent.objects.create(
        stripe_id="evt_done", type="invoice.paid", livemode=False, created=now, payload={}, processed_at=now
    )
    UsageEvent.objects.create(
        tenant=tenant,
        metric=BillableMetric.objects.get(code="ai_tokens"),
        quantity=Decimal(5),
        occurred_at=now,
        received_at=Now() - timedelta(minutes=15),
        reported_by=make_reporter(),
        idempotency_key="lagging",
        payload_hash="0" * 64,
    )
    for hours in (0.2, 0.9, 1.5):  # two in the last hour, one before it
        SubscriptionEvent.objects.create(
            subscription=subscription,
            action="suspend",
            from_status="past_due",
            to_status="suspended",
            actor="system",
            reason=DUNNING_SUSPENSION,
            at=now - timedelta(hours=hours),
        )
    SubscriptionEvent.objects.create(  # suspended by staff: not dunning
        subscription=subscription, action="suspend", to_status="suspended", actor="staff:ann", reason="fraud", at=now
    )

    text = scrape(client, settings)
    assert sample(text, "billing_work_items", job="invoicing.collect", state="blocked") == 1
    assert sample(text, "billing_work_items", job="invoicing.collect", state="retrying") == 1
    assert sample(text, "billing_webhook_events_pending") == 2
    assert 20 * 60 <= sample(text, "billing_webhook_oldest_pending_seconds") < 21 * 60
    assert 15 * 60 <= sample(text, "billing_usage_aggregation_lag_seconds") < 16 * 60
    assert sample(text, "billing_dunning_suspensions_last_hour") == 2


def make_reporter() -> Any:
    from billing_project.api_keys import api_key_create

    return api_key_create(name="reporter", kind="service", scopes=["usage:write"], metrics=["ai_tokens"]).key


def test_a_reader_that_fails_is_left_out_and_counted_never_failing_the_scrape(client, settings):
    def broken() -> Iterable[Metric]:
        raise RuntimeError("the database is gone")

    STATE_READERS["zz_broken"] = broken
    try:
        text = scrape(client, settings)
    finally:
        del STATE_READERS["zz_broken"]
    assert sample(text, "billing_state_read_failures", reader="zz_broken") == 1
    assert sample(text, "billing_task_failures_open") == 0  # the others are still read
