"""The webhook intake's backlog for the alert rules: Stripe events stored and not yet
processed, and how long the oldest has waited (on the database's clock)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from prometheus_client.core import Metric

from billing_project.observability import gauge, state_reader


@state_reader("webhook_backlog")
def webhook_backlog() -> Iterable[Metric]:
    with connection.cursor() as cursor:  # the partial index on pending events answers both
        cursor.execute(
            "SELECT count(*), coalesce(extract(epoch FROM statement_timestamp() - min(received_at)), 0)"
            " FROM webhooks_stripeevent WHERE processed_at IS NULL"
        )
        pending, oldest = cursor.fetchone() or (0, 0)
    yield gauge("billing_webhook_events_pending", "Stripe events stored and not processed yet", pending)
    yield gauge(
        "billing_webhook_oldest_pending_seconds", "Age of the oldest unprocessed Stripe event (0: none)", float(oldest)
    )
