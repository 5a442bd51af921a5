"""Privacy's Celery tasks: thin."""

from __future__ import annotations

from celery import shared_task

from billing_project.tasks import BillingTask

from .services import buyers_erase_due, erasure_at_stripe, erasures_at_stripe_pending


@shared_task(base=BillingTask, ignore_result=True)
def erase_at_stripe(erasure_id: int) -> None:
    """After an erasure commits: its Stripe customers pseudonymised (retried with backoff)."""
    erasure_at_stripe(erasure_id=erasure_id)


@shared_task(base=BillingTask, ignore_result=True, autoretry_for=())
def retry_stripe_erasures() -> int:
    """Every 10 minutes (beat): erasures Stripe has not taken yet, tried again (a lost send,
    an outage longer than the task's retries). One failure does not hold back the rest."""
    done = 0
    for erasure_id in erasures_at_stripe_pending():
        try:
            erasure_at_stripe(erasure_id=erasure_id)
            done += 1
        except Exception:  # noqa: BLE001,S112  (recorded on the erasure and logged by the service)
            continue
    return done


@shared_task(base=BillingTask, ignore_result=True)
def erase_retained_buyers() -> int:
    """Daily (beat): erased tenants' invoices past their retention lose their buyer."""
    return buyers_erase_due()
