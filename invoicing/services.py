"""Invoicing's service API: every write of invoicing, by lifecycle.

- drafting.py: an invoice's lines, read from billing periods (usage in arrears per
  period and plan version, base fees in advance, proration, late usage), as Money;
- issuing.py: the period close, credit on drafts, finalization with the next number;
- collection.py: paid, payment failed, dunning retries, void, uncollectible, through
  one status transition table that mirrors the database guard;
- corrections.py: credit notes (settled as credit, or by a refund);
- refunds.py: refunds, from request to Stripe's confirmation (or, for an invoice staff
  marked paid, to the payout staff made outside Stripe);
- selectors.py: what each beat job has due.

Callers import from here; the modules behind may move.
"""

from __future__ import annotations

from .collection import (
    TRANSITIONS,
    invoice_mark_paid,
    invoice_mark_uncollectible,
    invoice_payment_failed,
    invoice_retry_recorded,
    invoice_void,
)
from .corrections import CREDITABLE, credit_note_issue
from .drafting import events_behind
from .issuing import (
    invoice_close_periods,
    invoice_finalize,
    invoice_finalize_with_tax,
    invoice_late_usage,
    invoice_total_with_tax,
    invoice_upcoming,
    invoices_close_chunk,
    invoices_close_due,
    invoices_close_fan_out,
    invoices_late_usage_due,
)
from .jobs import collect_after_commit
from .refunds import (
    RefundTotals,
    refund_approve_ready,
    refund_cancel,
    refund_method,
    refund_request,
    refund_submit,
    refund_sync_apply,
    refund_totals,
    refundable,
)
from .selectors import invoices_awaiting_collection, late_usage_due, payment_retries_due

__all__ = [
    "CREDITABLE",
    "TRANSITIONS",
    "RefundTotals",
    "collect_after_commit",
    "credit_note_issue",
    "events_behind",
    "invoice_close_periods",
    "invoice_upcoming",
    "invoice_finalize",
    "invoice_finalize_with_tax",
    "invoice_late_usage",
    "invoice_mark_paid",
    "invoice_mark_uncollectible",
    "invoice_payment_failed",
    "invoice_retry_recorded",
    "invoice_total_with_tax",
    "invoice_void",
    "invoices_awaiting_collection",
    "invoices_close_chunk",
    "invoices_close_due",
    "invoices_close_fan_out",
    "invoices_late_usage_due",
    "late_usage_due",
    "payment_retries_due",
    "refund_approve_ready",
    "refund_cancel",
    "refund_method",
    "refund_request",
    "refund_submit",
    "refund_sync_apply",
    "refund_totals",
    "refundable",
]
