"""Work invoicing's services queue, by task name (billing_project.jobs)."""

from __future__ import annotations

from django.conf import settings

from billing_project.jobs import send_after_commit


def collect_after_commit(invoice_id: int) -> None:
    """Queue collection at Stripe once the invoice is committed. A lost send is picked
    up by the sweeper (selectors.invoices_awaiting_collection)."""
    if settings.STRIPE_COLLECTION_ENABLED:
        send_after_commit(
            "invoicing.tasks.collect_invoice",
            invoice_id,
            failure_event="invoicing.collect_enqueue_failed",
            invoice_id=invoice_id,
        )
