"""The one seam through which invoicing's services queue work: tasks by name, never
by import (tasks call services; services never import tasks)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

COLLECT_INVOICE = "invoicing.tasks.collect_invoice"


def collect_after_commit(invoice_id: int) -> None:
    """Queue collection at Stripe once the invoice is committed. A lost send is picked
    up by the sweeper (selectors.invoices_awaiting_collection)."""
    if not settings.STRIPE_COLLECTION_ENABLED:
        return

    def send() -> None:
        from billing_project.celery import app

        try:
            app.send_task(COLLECT_INVOICE, args=(invoice_id,), queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        except Exception:
            logger.exception("invoicing.collect_enqueue_failed", extra={"invoice_id": invoice_id})

    transaction.on_commit(send)
