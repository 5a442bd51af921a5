"""Our books against Stripe's, once a day (`stripe_reconcile`, beat: reconcile-with-stripe).

dj-stripe's mirror is brought up to Stripe for the window (objects created in the last
STRIPE_RECONCILIATION_DAYS, longer than the 30 days Stripe keeps events: whatever a lost
webhook left behind is still in it), then compared with our records created in it:

- each invoice of ours at Stripe is one Stripe invoice of the same currency, total and
  status; each Stripe invoice is one of ours (`unknown_at_stripe`; `duplicate_at_stripe`
  when its metadata names one of ours that has another);
- a paid invoice's paid payments at Stripe add up to its total, in its currency;
- every succeeded charge at Stripe is a payment of one of our invoices;
- each refund of ours sent to Stripe is one Stripe refund of the same currency, amount and
  a status that says the same; each Stripe refund is one of ours.

Objects of the last SETTLE are left to the next run: between a write at Stripe and ours
(or a webhook on its way) the two sides may differ for a moment without anything being
wrong. Stripe out of reach raises ProviderUnavailable (the task retries, then records a
task failure); findings are the day's report, with a task failure while any is open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing_project.models import TaskFailure
from billing_project.money import money_display

from . import providers
from .models import Invoice, Refund, StripeMismatch, StripeReconciliation
from .providers import RemoteInvoice, RemoteInvoicePayment, RemoteRefund

logger = logging.getLogger(__name__)

SETTLE = timedelta(hours=1)
TASK = "invoicing.tasks.reconcile_with_stripe"
K = StripeMismatch.Kind
OBJ = StripeMismatch.Object
# What a refund of ours says, and the Stripe statuses that say the same.
REFUND_STATUSES: dict[str, set[str]] = {
    Refund.Status.SUBMITTED: {"pending", "requires_action"},
    Refund.Status.SUCCEEDED: {"succeeded"},
    Refund.Status.FAILED: {"failed", "canceled"},
}
_PREFIXES = {
    "in_": OBJ.INVOICE,
    "ch_": OBJ.CHARGE,
    "py_": OBJ.CHARGE,
    "re_": OBJ.REFUND,
    "pyr": OBJ.REFUND,
    "pi_": OBJ.PAYMENT,
    "cus": OBJ.CUSTOMER,
}


@dataclass(frozen=True)
class Finding:
    kind: str
    object_type: str
    stripe_id: str
    detail: str
    ours: str = ""
    theirs: str = ""
    invoice_id: int | None = None
    refund_id: int | None = None


def _money(amount: Decimal, currency: str) -> str:
    return money_display(amount, currency)


# ---------------------------------------------------------------- invoices and payments
def _fetched(kind: str, ids: Iterable[str], findings: list[Finding], names: dict[str, tuple[int, str]]) -> list[str]:
    """Ours that the window's mirror lacks, fetched from Stripe one by one: the ids Stripe
    has (now mirrored); a finding for each it does not, or that dj-stripe cannot mirror."""
    found = []
    for stripe_id in ids:
        pk, label = names[stripe_id]
        invoice_id, refund_id = (pk, None) if kind == OBJ.INVOICE else (None, pk)
        try:
            if providers.mirror_fetch(kind, stripe_id):
                found.append(stripe_id)
                continue
            kind_found, detail = K.MISSING_AT_STRIPE, f"{label} names {stripe_id}; Stripe has no such {kind}"
        except providers.ProviderRejected as exc:
            kind_found, detail = K.NOT_MIRRORED, f"{label}: {exc}"
        findings.append(Finding(kind_found, kind, stripe_id, detail, invoice_id=invoice_id, refund_id=refund_id))
    return found


def _unmatched(
    kind: str,
    stripe_id: str,
    theirs: str,
    status: str,
    *,
    claimed: tuple[str, str] | None,
    invoice_id: int | None = None,
    refund_id: int | None = None,
) -> Finding:
    """A Stripe object none of ours is: a second one for the record of ours its metadata
    names (`claimed`: that record's label and its own Stripe id), else unknown."""
    ref = {"invoice_id": invoice_id, "refund_id": refund_id}
    if claimed is not None and claimed[1]:
        label, own = claimed
        detail = f"Stripe's {kind} of {theirs} names {label}, which is {own} at Stripe"
        return Finding(K.DUPLICATE_AT_STRIPE, kind, stripe_id, detail, own, theirs, **ref)
    which = f" names {claimed[0]}, which does not know it" if claimed else f" is no {kind} of ours"
    detail = f"Stripe's {kind} of {theirs} ({status}){which}"
    return Finding(K.UNKNOWN_AT_STRIPE, kind, stripe_id, detail, "", theirs, **ref)


def _invoice_findings(invoice: Invoice, remote: RemoteInvoice) -> list[Finding]:
    found = []
    label, sid = f"invoice {invoice}", remote.stripe_invoice_id
    if invoice.currency != remote.currency:
        found.append(
            Finding(
                K.CURRENCY,
                OBJ.INVOICE,
                sid,
                f"{label} is in {invoice.currency}, Stripe's in {remote.currency}",
                invoice.currency,
                remote.currency,
                invoice_id=invoice.pk,
            )
        )
    elif invoice.total != remote.total:
        ours, theirs = _money(invoice.total, invoice.currency), _money(remote.total, remote.currency)
        found.append(
            Finding(
                K.AMOUNT,
                OBJ.INVOICE,
                sid,
                f"{label} totals {ours}, Stripe's {theirs}",
                ours,
                theirs,
                invoice_id=invoice.pk,
            )
        )
    if invoice.status != remote.status:
        found.append(
            Finding(
                K.STATUS,
                OBJ.INVOICE,
                sid,
                f"{label} is {invoice.status}, Stripe's {remote.status}",
                invoice.status,
                remote.status,
                invoice_id=invoice.pk,
            )
        )
    return found


def _payment_findings(invoice: Invoice, remote: RemoteInvoice, payments: list[RemoteInvoicePayment]) -> list[Finding]:
    """A paid invoice at Stripe: its paid payments add up to our total, in our currency."""
    paid = [p for p in payments if p.status == "paid"]
    label, sid = f"invoice {invoice}", remote.stripe_invoice_id
    others = sorted({p.currency for p in paid} - {invoice.currency})
    if others:
        return [
            Finding(
                K.CURRENCY,
                OBJ.PAYMENT,
                sid,
                f"{label} in {invoice.currency} was paid at Stripe in {', '.join(others)}",
                invoice.currency,
                ", ".join(others),
                invoice_id=invoice.pk,
            )
        ]
    total = sum((p.amount_paid for p in paid), Decimal(0))
    if total != invoice.total:
        ours, theirs = _money(invoice.total, invoice.currency), _money(total, invoice.currency)
        return [
            Finding(
                K.AMOUNT,
                OBJ.PAYMENT,
                sid,
                f"{label} totals {ours}; Stripe's payments of it add up to {theirs}",
                ours,
                theirs,
                invoice_id=invoice.pk,
            )
        ]
    return []


def _compare_invoices(
    remotes: list[RemoteInvoice],
    *,
    since: datetime,
    cutoff: datetime,
    findings: list[Finding],
    not_mirrored: set[str],
) -> tuple[dict[str, Invoice], dict[str, RemoteInvoice]]:
    """Invoices both ways; ours and Stripe's by Stripe id, for the payments."""
    by_id = {r.stripe_invoice_id: r for r in remotes}
    # ours made or moved in the window, and every one still open at Stripe's end whatever
    # its age (an old invoice in dunning voided here, or paid out of band there)
    moved = Q(created_at__gte=since) | Q(finalized_at__gte=since) | Q(paid_at__gte=since)
    moved |= Q(voided_at__gte=since) | Q(uncollectible_at__gte=since)
    moved |= Q(status__in=[Invoice.Status.DRAFT, Invoice.Status.OPEN])
    window = (
        Invoice.objects.filter(stripe_invoice_id__isnull=False, created_at__lt=cutoff)
        .filter(moved)
        .only("pk", "number", "stripe_invoice_id")
    )
    names = {str(i.stripe_invoice_id): (i.pk, f"invoice {i}") for i in window}
    fetched = _fetched(OBJ.INVOICE, sorted(set(names) - set(by_id) - not_mirrored), findings, names)
    by_id.update((r.stripe_invoice_id, r) for r in providers.mirror_invoices(fetched))
    ours = {str(i.stripe_invoice_id): i for i in Invoice.objects.filter(stripe_invoice_id__in=list(by_id))}
    named = {
        i.pk: i
        for i in Invoice.objects.filter(pk__in=[r.billing_invoice_id for r in by_id.values() if r.billing_invoice_id])
    }
    for sid, remote in sorted(by_id.items()):
        invoice = ours.get(sid)
        if invoice is not None:
            findings.extend(_invoice_findings(invoice, remote))
            continue
        claimed = named.get(remote.billing_invoice_id or 0)
        findings.append(
            _unmatched(
                OBJ.INVOICE,
                sid,
                _money(remote.total, remote.currency),
                remote.status,
                claimed=(f"invoice {claimed}", claimed.stripe_invoice_id or "") if claimed else None,
                invoice_id=claimed.pk if claimed else None,
            )
        )
    return ours, by_id


def _compare_payments(
    ours: dict[str, Invoice], remotes: dict[str, RemoteInvoice], *, since: datetime, findings: list[Finding]
) -> tuple[set[str], set[str], int]:
    """Paid invoices' payments; the charges and payment intents they are made of."""
    intents: set[str] = set()
    charges: set[str] = set()
    paid_since = Invoice.objects.filter(stripe_invoice_id__isnull=False, paid_at__gte=since).values_list(
        "stripe_invoice_id", flat=True
    )
    asked = sorted({sid for sid, r in remotes.items() if r.status == "paid"} | {str(s) for s in paid_since})
    for sid in asked:
        payments = providers.invoice_payments(sid)
        intents.update(p.payment_intent for p in payments if p.payment_intent)
        charges.update(p.charge_id for p in payments if p.charge_id)
        invoice, remote = ours.get(sid), remotes.get(sid)
        if invoice is not None and remote is not None and remote.status == "paid":
            findings.extend(_payment_findings(invoice, remote, payments))
    return intents, charges, len(asked)


# ---------------------------------------------------------------- refunds
def _refund_findings(refund: Refund, remote: RemoteRefund) -> list[Finding]:
    found = []
    label, rid = f"refund {refund.pk} of invoice {refund.invoice}", remote.refund_id
    if refund.currency != remote.currency:
        found.append(
            Finding(
                K.CURRENCY,
                OBJ.REFUND,
                rid,
                f"{label} is in {refund.currency}, Stripe's in {remote.currency}",
                refund.currency,
                remote.currency,
                invoice_id=refund.invoice_id,
                refund_id=refund.pk,
            )
        )
    elif refund.amount != remote.amount:
        ours, theirs = _money(refund.amount, refund.currency), _money(remote.amount, remote.currency)
        found.append(
            Finding(
                K.AMOUNT,
                OBJ.REFUND,
                rid,
                f"{label} is {ours}, Stripe's {theirs}",
                ours,
                theirs,
                invoice_id=refund.invoice_id,
                refund_id=refund.pk,
            )
        )
    # a refund of ours not yet sent (requested, awaiting approval) has no status to compare
    if refund.status in REFUND_STATUSES and remote.status not in REFUND_STATUSES[refund.status]:
        found.append(
            Finding(
                K.STATUS,
                OBJ.REFUND,
                rid,
                f"{label} is {refund.status}, Stripe's {remote.status}",
                refund.status,
                remote.status,
                invoice_id=refund.invoice_id,
                refund_id=refund.pk,
            )
        )
    return found


def _compare_refunds(
    remotes: list[RemoteRefund], *, since: datetime, cutoff: datetime, findings: list[Finding], not_mirrored: set[str]
) -> int:
    by_id = {r.refund_id: r for r in remotes}
    # ours made or moved in the window, and every one still awaiting Stripe whatever its age
    moved = Q(created_at__gte=since) | Q(submitted_at__gte=since) | Q(succeeded_at__gte=since)
    moved |= Q(failed_at__gte=since) | Q(status=Refund.Status.SUBMITTED)
    window = Refund.objects.exclude(stripe_refund_id="").filter(moved, created_at__lt=cutoff)
    names = {r.stripe_refund_id: (r.pk, f"refund {r.pk}") for r in window.only("pk", "stripe_refund_id")}
    fetched = _fetched(OBJ.REFUND, sorted(set(names) - set(by_id) - not_mirrored), findings, names)
    by_id.update((r.refund_id, r) for r in providers.mirror_refunds(fetched))
    ours = {
        r.stripe_refund_id: r for r in Refund.objects.filter(stripe_refund_id__in=list(by_id)).select_related("invoice")
    }
    named = {
        r.pk: r
        for r in Refund.objects.filter(pk__in=[r.billing_refund_id for r in by_id.values() if r.billing_refund_id])
    }
    for rid, remote in sorted(by_id.items()):
        refund = ours.get(rid)
        if refund is not None:
            findings.extend(_refund_findings(refund, remote))
            continue
        claimed = named.get(remote.billing_refund_id or 0)
        findings.append(
            _unmatched(
                OBJ.REFUND,
                rid,
                _money(remote.amount, remote.currency),
                remote.status,
                claimed=(f"refund {claimed.pk}", claimed.stripe_refund_id) if claimed else None,
                invoice_id=claimed.invoice_id if claimed else None,
                refund_id=claimed.pk if claimed else None,
            )
        )
    return len(by_id)


# ---------------------------------------------------------------- the day's report
def stripe_reconcile(*, now: datetime | None = None) -> StripeReconciliation:
    """Sync the mirror, compare, and write the day's report (replacing an earlier one of
    the same day). Outside any transaction: Stripe is called throughout."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.STRIPE_RECONCILIATION_DAYS)
    cutoff = now - SETTLE
    synced = providers.mirror_sync(since=since)
    mirror = providers.mirror_read(since=since, until=cutoff, seen=synced.seen)
    not_mirrored = {stripe_id for stripe_id, _ in synced.failed}
    findings: list[Finding] = [
        Finding(
            K.NOT_MIRRORED,
            _PREFIXES.get(stripe_id[:3], OBJ.INVOICE),
            stripe_id,
            f"dj-stripe could not mirror it: {error}",
        )
        for stripe_id, error in synced.failed
    ]
    ours, remotes = _compare_invoices(
        mirror.invoices, since=since, cutoff=cutoff, findings=findings, not_mirrored=not_mirrored
    )
    intents, charges, paid = _compare_payments(ours, remotes, since=since, findings=findings)
    for charge in mirror.charges:
        if charge.status == "succeeded" and charge.charge_id not in charges and charge.payment_intent not in intents:
            theirs = _money(charge.amount, charge.currency)
            findings.append(
                Finding(
                    K.UNKNOWN_AT_STRIPE,
                    OBJ.CHARGE,
                    charge.charge_id,
                    f"Stripe charged {theirs} ({charge.customer or 'no customer'}) for no invoice of ours",
                    "",
                    theirs,
                )
            )
    refunds = _compare_refunds(mirror.refunds, since=since, cutoff=cutoff, findings=findings, not_mirrored=not_mirrored)
    compared = {"invoices": len(remotes), "paid_invoices": paid, "charges": len(mirror.charges), "refunds": refunds}
    return _report(now=now, since=since, cutoff=cutoff, compared=compared, failed=synced.failed, findings=findings)


@transaction.atomic
def _report(
    *,
    now: datetime,
    since: datetime,
    cutoff: datetime,
    compared: dict[str, int],
    failed: list[tuple[str, str]],
    findings: list[Finding],
) -> StripeReconciliation:
    day = timezone.localdate(now, timezone=timezone.get_fixed_timezone(0))
    state = StripeReconciliation.State.MISMATCHED if findings else StripeReconciliation.State.MATCHED
    report, _ = StripeReconciliation.objects.update_or_create(
        day=day,
        defaults={
            "window_start": since,
            "cutoff": cutoff,
            "state": state,
            "compared": compared,
            "mirror_failures": [list(f) for f in failed],
            "started_at": now,
            "finished_at": timezone.now(),
        },
    )
    report.mismatches.all().delete()
    StripeMismatch.objects.bulk_create(
        StripeMismatch(
            reconciliation=report,
            kind=f.kind,
            object_type=f.object_type,
            stripe_id=f.stripe_id,
            detail=f.detail,
            ours=f.ours[:200],
            theirs=f.theirs[:200],
            invoice_id=f.invoice_id,
            refund_id=f.refund_id,
        )
        for f in findings
    )
    _failure_record(report, findings)
    logger.info(
        "reconciliation.finished",
        extra={
            "day": day.isoformat(),
            "mismatches": len(findings),
            "compared": compared,
            "mirror_failures": len(failed),
        },
    )
    return report


def _failure_record(report: StripeReconciliation, findings: list[Finding]) -> None:
    """A day with mismatches is a task failure staff must look at (the admin's Task failures,
    billing_task_failures_open); a later run of that day that finds none resolves it."""
    task_id = f"stripe-reconciliation-{report.day.isoformat()}"
    if not findings:
        TaskFailure.objects.filter(task_id=task_id, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolution_note="a later run of the same day found everything matching"
        )
        return
    summary = ", ".join(f"{n} {k}" for k, n in reconciliation_kinds(report).items())
    TaskFailure.objects.update_or_create(
        task_id=task_id,
        defaults={
            "task_name": TASK,
            "args": [report.day.isoformat()],
            "kwargs": {},
            "exception_type": "StripeMismatch",
            "message": f"{len(findings)} mismatches with Stripe on {report.day.isoformat()}: {summary}",
            "traceback": "",
            "resolved_at": None,
            "resolution_note": "",
        },
    )


# ---------------------------------------------------------------- reading the report
def stripe_url(mismatch: StripeMismatch) -> str:
    """Stripe's side of a mismatch in its dashboard (a payment's is its invoice's, whose id it holds)."""
    return providers.dashboard_url(mismatch.stripe_id) if mismatch.stripe_id else ""


def reconciliation_kinds(report: StripeReconciliation) -> dict[str, int]:
    """How many mismatches of each kind ("invoice amount", "refund unknown_at_stripe", …)."""
    kinds: dict[str, int] = {}
    for object_type, kind in report.mismatches.values_list("object_type", "kind"):
        kinds[f"{object_type} {kind}"] = kinds.get(f"{object_type} {kind}", 0) + 1
    return dict(sorted(kinds.items()))
