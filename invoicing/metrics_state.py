"""The last reconciliation with Stripe, for the alert rules: its mismatches by kind (0 for
each kind when none) and when it finished (0: never, as while collection at Stripe is
off), so that a run that stops happening is an alert too."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from billing_project.observability import gauge, state_reader

_ALL = ("missing_at_stripe", "unknown_at_stripe", "duplicate_at_stripe", "amount", "currency", "status")
# the pairs that can occur, each served (0 when none) so that a rule sees the series exist
SERIES = [
    *(("invoice", k) for k in (*_ALL, "not_mirrored")),
    *(("refund", k) for k in (*_ALL, "not_mirrored")),
    *(("payment", k) for k in ("amount", "currency", "not_mirrored")),
    *(("charge", k) for k in ("unknown_at_stripe", "not_mirrored")),
    ("customer", "not_mirrored"),
]


@state_reader("stripe_reconciliation")
def stripe_reconciliation() -> Iterable[Metric]:
    from .models import StripeReconciliation
    from .reconciliation import reconciliation_kinds

    report = StripeReconciliation.objects.exclude(finished_at=None).order_by("-day").first()
    found = reconciliation_kinds(report) if report else {}
    family = GaugeMetricFamily(
        "billing_reconciliation_mismatches",
        "Mismatches with Stripe in the last reconciliation, by object and kind",
        labels=["object", "kind"],
    )
    for pair in sorted(set(SERIES) | {tuple(k.split(" ", 1)) for k in found}):
        family.add_metric(list(pair), found.get(" ".join(pair), 0))
    yield family
    yield gauge(
        "billing_reconciliation_last_run_timestamp_seconds",
        "When the last reconciliation with Stripe finished (Unix time)",
        report.finished_at.timestamp() if report and report.finished_at else 0,
    )
