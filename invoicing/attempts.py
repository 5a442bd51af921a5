"""Invoicing's swept work, one attempt at a time (billing_project.work): collecting an
invoice at Stripe, a dunning retry and sending a refund to Stripe. A failure is counted on the item and backed off; a
refusal (Stripe refused it, totals disagree) blocks it at once, where staff see it with the
reason; the sweepers leave blocked and backing-off items alone. The period close and late
usage count theirs in issuing.py, per subscription."""

from __future__ import annotations

from datetime import datetime

from billing_project.work import Item, work_attempt

from . import jobs
from .models import Invoice, Refund
from .payments import invoice_collect, invoice_retry_payment
from .refunds import refund_submit, refunds_awaiting_submission
from .selectors import invoices_awaiting_collection


def _invoice(job: str, task: str, invoice_id: int) -> Item:
    def subject() -> str:
        return str(Invoice.objects.only("number").get(pk=invoice_id))

    return Item(job=job, object_id=invoice_id, subject=subject, task=task, task_args=(invoice_id,))


def invoice_collect_attempt(*, invoice_id: int) -> Invoice | None:
    """One attempt to collect the invoice at Stripe (payments.invoice_collect), counted."""
    return work_attempt(
        _invoice(jobs.COLLECT, jobs.COLLECT_TASK, invoice_id),
        lambda: invoice_collect(invoice_id=invoice_id),
        permanent=jobs.PERMANENT,
    )


def invoice_retry_payment_attempt(*, invoice_id: int, now: datetime | None = None) -> Invoice | None:
    """One dunning retry (payments.invoice_retry_payment), counted."""
    return work_attempt(
        _invoice(jobs.PAYMENT_RETRY, jobs.PAYMENT_RETRY_TASK, invoice_id),
        lambda: invoice_retry_payment(invoice_id=invoice_id, now=now),
        permanent=jobs.PERMANENT,
        now=now,
    )


def invoices_collect_pending(*, now: datetime | None = None) -> int:
    """The collection sweeper: queue again what Stripe should hold and does not, except
    what is blocked or backing off. Outside a transaction each send goes at once."""
    pending = invoices_awaiting_collection(now=now)
    for invoice_id in pending:
        jobs.collect_after_commit(invoice_id)
    return len(pending)


def refund_submit_attempt(*, refund_id: int, now: datetime | None = None) -> Refund | None:
    """One attempt to send a refund to Stripe (refunds.refund_submit), counted: Stripe
    unreachable backs off (the refund stays requested; the sweeper sends it again once due)
    and blocks after MAX_ATTEMPTS; Stripe refusing is no failure of the work (the refund is
    failed, with Stripe's reason)."""

    def subject() -> str:
        refund = Refund.objects.select_related("invoice").get(pk=refund_id)
        return f"refund {refund.pk} of {refund.invoice}: {refund.amount} {refund.currency}"

    item = Item(
        job=jobs.REFUND_SUBMIT,
        object_id=refund_id,
        subject=subject,
        task=jobs.REFUND_SUBMIT_TASK,
        task_args=(refund_id,),
    )
    return work_attempt(item, lambda: refund_submit(refund_id=refund_id, now=now), permanent=jobs.PERMANENT, now=now)


def refunds_submit_pending(*, now: datetime | None = None) -> int:
    """The refund sweeper: queue again the requested refunds never submitted, except what is
    blocked or backing off."""
    pending = refunds_awaiting_submission(now=now)
    for refund_id in pending:
        jobs.refund_submit_after_commit(refund_id)
    return len(pending)
