"""The last reconciliation with Stripe, for the alert rules: its mismatches by kind (0 for
each kind when none) and when it finished (0: never, as while collection at Stripe is
off), so that a run that stops happening is an alert too."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from billing_project.observability import gauge, state_reader


@state_reader("stripe_reconciliation")
def stripe_reconciliation() -> Iterable[Metric]:
    from .models import StripeMismatch, StripeReconciliation
    from .reconciliation import reconciliation_kinds

    report = StripeReconciliation.objects.exclude(finished_at=None).order_by("-day").first()
    found = reconciliation_kinds(report) if report else {}
    family = GaugeMetricFamily(
        "billing_reconciliation_mismatches", "Mismatches with Stripe in the last reconciliation", labels=["kind"]
    )
    kinds = {f"{o} {k}" for o in StripeMismatch.Object.values for k in StripeMismatch.Kind.values} | set(found)
    for kind in sorted(kinds):
        family.add_metric([kind], found.get(kind, 0))
    yield family
    yield gauge(
        "billing_reconciliation_last_run_timestamp_seconds",
        "When the last reconciliation with Stripe finished (Unix time)",
        report.finished_at.timestamp() if report and report.finished_at else 0,
    )
