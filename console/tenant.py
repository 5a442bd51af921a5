"""A tenant's whole picture on one page, composed from each app's own selectors: details,
subscription and period, usage so far with cost to date, the entitlement answers now,
invoices with their payments, refunds and credit notes, credit balances and the ledger,
grants, approvals, and one timeline of everything that happened, with who and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from approvals.models import ApprovalRequest
from billing_project.audit import api_actor_of
from billing_project.money import money_display as money  # as finance reads it: "24,000.00 USD"
from billing_project.money import quantity_display
from entitlements.models import Grant
from entitlements.services import entitlements_list
from invoicing.corrections import credit_room, refunds_in_flight
from invoicing.ledger import credit_balances, credit_lots
from invoicing.models import CreditEntry, CreditNote, Invoice, Refund
from invoicing.providers import customer_known
from invoicing.refunds import refundable
from invoicing.selectors import billing_view
from subscriptions.models import LIVE_STATUSES, BillingPeriod, Subscription, SubscriptionEvent, Tenant

from .models import StaffAction

TIMELINE_LIMIT = 200


def stripe_url(kind: str, object_id: str) -> str | None:
    """The object on Stripe's dashboard (test or live, as this deployment is)."""
    if not object_id:
        return None
    mode = "" if settings.STRIPE_LIVE_MODE else "test/"
    return f"https://dashboard.stripe.com/{mode}{kind}/{object_id}"


@dataclass(frozen=True)
class Happening:
    """One line of the timeline."""

    at: datetime
    what: str
    who: str
    why: str = ""
    link: str | None = None
    money: bool = True  # names amounts or money records: only for those who read invoices


@dataclass
class InvoiceRow:
    invoice: Invoice
    total: str
    refunds: list[Refund] = field(default_factory=list)
    credit_notes: list[CreditNote] = field(default_factory=list)
    refundable: Decimal = Decimal(0)
    creditable: Decimal = Decimal(0)  # what a credit note could still credit
    stripe: str | None = None

    @property
    def refund_lines(self) -> list[tuple[str, str | None]]:
        """Each refund as text, with its page on Stripe's dashboard when Stripe made it."""
        return [
            (f"{money(r.amount, r.currency)} ({r.get_status_display()})", stripe_url("refunds", r.stripe_refund_id))
            for r in self.refunds
        ]

    @property
    def note_lines(self) -> list[str]:
        return [f"{n.number}: {money(n.total, n.currency)}" for n in self.credit_notes]


def _admin(obj: Any) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def _creditable(invoice: Invoice) -> Decimal:
    """What a credit note could still credit on a paid invoice (the same room the service checks)."""
    if invoice.status != Invoice.Status.PAID:
        return Decimal(0)
    return max(credit_room(invoice=invoice).total - refunds_in_flight(invoice=invoice), Decimal(0))


def _invoices(tenant: Tenant) -> list[InvoiceRow]:
    rows = []
    refunds: dict[int, list[Refund]] = {}
    for refund in Refund.objects.filter(tenant=tenant).order_by("created_at", "pk"):
        refunds.setdefault(refund.invoice_id, []).append(refund)
    notes: dict[int, list[CreditNote]] = {}
    for note in CreditNote.objects.filter(tenant=tenant).order_by("created_at", "pk"):
        notes.setdefault(note.invoice_id, []).append(note)
    for invoice in Invoice.objects.filter(tenant=tenant).order_by("-created_at", "-pk")[:100]:
        rows.append(
            InvoiceRow(
                invoice=invoice,
                total=money(invoice.total, invoice.currency),
                refunds=refunds.get(invoice.pk, []),
                credit_notes=notes.get(invoice.pk, []),
                refundable=refundable(invoice=invoice) if invoice.status == Invoice.Status.PAID else Decimal(0),
                creditable=_creditable(invoice),
                stripe=stripe_url("invoices", invoice.stripe_invoice_id or ""),
            )
        )
    return rows


_MOVED = {"paid": "paid", "void": "voided", "uncollectible": "marked uncollectible"}
_ACTION_OF = {"void": "void", "uncollectible": "uncollectible"}  # the console action behind a move


def _who(entry: LogEntry) -> str:
    """The actor an audit entry names: the API key or label (task:…, stripe:evt_…), else the staff member."""
    return api_actor_of(entry) or (entry.actor.get_username() if entry.actor else "system")


def _status_movers(invoices: list[Invoice]) -> dict[tuple[int, str], str]:
    """Who moved each invoice to paid, void or uncollectible, from the audit trail."""
    movers: dict[tuple[int, str], str] = {}
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Invoice), object_pk__in=[str(i.pk) for i in invoices]
    ).order_by("timestamp")
    for entry in entries:
        status = (entry.changes_dict or {}).get("status")
        if isinstance(status, list) and len(status) == 2 and status[1] in _MOVED:
            movers.setdefault((int(entry.object_pk), str(status[1])), _who(entry))
    return movers


def _timeline(tenant: Tenant, subscriptions: list[Subscription]) -> list[Happening]:
    happened: list[Happening] = []
    for event in SubscriptionEvent.objects.filter(subscription__tenant=tenant).order_by("-at")[:TIMELINE_LIMIT]:
        move = f"{event.from_status or '—'} → {event.to_status}" if event.from_status != event.to_status else ""
        happened.append(
            Happening(event.at, f"Subscription: {event.action} {move}".strip(), event.actor, event.reason, money=False)
        )
    invoices = list(
        Invoice.objects.filter(tenant=tenant).exclude(number=None).order_by("-finalized_at")[:TIMELINE_LIMIT]
    )
    moved_by = _status_movers(invoices)
    # why staff did what the invoice and grant records keep no reason for (the console's own record)
    asked = {
        (a.kind, a.outcome.get("invoice") or a.outcome.get("grant")): a
        for a in StaffAction.objects.filter(tenant=tenant, kind__in=("void", "uncollectible", "revoke_grant", "retry"))
        .select_related("user")
        .order_by("created_at")
    }
    for invoice in invoices:
        total = money(invoice.total, invoice.currency)
        issued = invoice.finalized_at or invoice.created_at
        happened.append(Happening(issued, f"Invoice {invoice.number} issued: {total}", "billing", "", _admin(invoice)))
        for at, status in (
            (invoice.paid_at, "paid"),
            (invoice.voided_at, "void"),
            (invoice.uncollectible_at, "uncollectible"),
        ):
            if at:
                who = moved_by.get((invoice.pk, status), "Stripe" if invoice.stripe_invoice_id else "billing")
                action = asked.get((_ACTION_OF.get(status, ""), invoice.pk))
                why = action.outcome.get("reason", "") if action else ""
                happened.append(Happening(at, f"Invoice {invoice.number} {_MOVED[status]}", who, why))
        if (retry := asked.get(("retry", invoice.pk))) is not None:
            happened.append(
                Happening(
                    retry.created_at,
                    f"Payment of {invoice.number} retried now",
                    f"staff:{retry.user.get_username()}",
                    retry.outcome.get("reason", ""),
                )
            )
    for refund in Refund.objects.filter(tenant=tenant).order_by("-created_at")[:TIMELINE_LIMIT]:
        amount = money(refund.amount, refund.currency)
        happened.append(
            Happening(
                refund.created_at,
                f"Refund of {amount} asked",
                refund.requested_by,
                refund.reason,
            )
        )
        if refund.succeeded_at:
            payer = "Stripe" if refund.method == "stripe" else f"{refund.requested_by} ({refund.payout_reference})"
            happened.append(Happening(refund.succeeded_at, f"Refund of {amount} paid back", payer, ""))
        if refund.failed_at:
            happened.append(Happening(refund.failed_at, f"Refund of {amount} failed", "Stripe", refund.failure_reason))
    for entry in CreditEntry.objects.filter(tenant=tenant).order_by("-created_at")[:TIMELINE_LIMIT]:
        happened.append(
            Happening(
                entry.created_at,
                f"Credit {entry.get_kind_display()}: {money(entry.amount, entry.currency)}",
                entry.actor,
                entry.reason,
            )
        )
    for request in ApprovalRequest.objects.filter(tenant=tenant).order_by("-created_at")[:TIMELINE_LIMIT]:
        who = (
            f"staff:{request.requested_by.get_username()}"
            if request.requested_by
            else f"agent key {request.requested_by_key_id}"
        )
        happened.append(
            Happening(
                request.created_at, f"Approval asked: {request.description}", who, request.reason, _admin(request)
            )
        )
        if request.decided_at:
            decider = f"staff:{request.decided_by.get_username()}" if request.decided_by else "billing"
            happened.append(
                Happening(
                    request.decided_at,
                    f"Approval {request.get_status_display().lower()}",
                    decider,
                    request.decision_reason,
                )
            )
    for grant in (
        Grant.objects.filter(tenant=tenant).select_related("created_by").order_by("-created_at")[:TIMELINE_LIMIT]
    ):
        happened.append(
            Happening(
                grant.created_at,
                f"Grant: {grant}",
                f"staff:{grant.created_by.get_username()}",
                grant.reason,
                money=False,
            )
        )
        if grant.revoked_at:
            revoked = asked.get(("revoke_grant", grant.pk))
            who = f"staff:{revoked.user.get_username()}" if revoked else "staff"
            why = revoked.outcome.get("reason", "") if revoked else ""
            happened.append(Happening(grant.revoked_at, f"Grant revoked: {grant}", who, why, money=False))
    # the audit trail of the tenant and its subscriptions (who changed what)
    targets = [(ContentType.objects.get_for_model(Tenant), [tenant.pk])]
    targets.append((ContentType.objects.get_for_model(Subscription), [s.pk for s in subscriptions]))
    for content_type, ids in targets:
        for entry in LogEntry.objects.filter(content_type=content_type, object_pk__in=[str(i) for i in ids]).order_by(
            "-timestamp"
        )[:TIMELINE_LIMIT]:
            who = _who(entry)
            if entry.action == LogEntry.Action.CREATE:
                what = f"Audit: {content_type.name} created"
            else:
                changed = ", ".join(sorted((entry.changes_dict or {}).keys()))[:120]
                what = f"Audit: {content_type.name} changed: {changed}"
            happened.append(Happening(entry.timestamp, what, who, money=False))
    happened.sort(key=lambda h: h.at, reverse=True)
    return happened[:TIMELINE_LIMIT]


def _with_quantities(view: dict[str, Any]) -> dict[str, Any]:
    for line in view.get("usage") or []:
        line["quantity_shown"] = quantity_display(Decimal(str(line["quantity"])))
    return view


def tenant_picture(*, tenant: Tenant, now: datetime, see_money: bool = True) -> dict[str, Any]:
    """Everything the tenant page shows (a read: nothing is written); without `see_money`
    (support) the timeline keeps what names no amount and no money record."""
    subscriptions = list(
        Subscription.objects.filter(tenant=tenant).select_related("plan_version__plan").order_by("-started_at")
    )
    live = next((s for s in subscriptions if s.status in LIVE_STATUSES), None)
    periods = list(
        BillingPeriod.objects.filter(subscription__tenant=tenant)
        .select_related("plan_version__plan")
        .order_by("-start")[:12]
    )
    try:
        entitlements = entitlements_list(tenant=tenant.external_id)["entitlements"]
    except Exception:  # noqa: BLE001  the page shows the rest when one part cannot answer
        entitlements = []
    balances = credit_balances(tenant=tenant, at=now)
    customer = customer_known(tenant)
    expiring = [
        {"amount": money(lot.remaining, currency), "expires_at": lot.expires_at}
        for currency in sorted(balances)
        for lot in credit_lots(tenant_id=tenant.pk, currency=currency)
        if lot.expires_at is not None and lot.expires_at > now
    ]
    return {
        "tenant": tenant,
        "stripe_customer": (customer, stripe_url("customers", customer)) if customer else None,
        "subscriptions": subscriptions,
        "live": live,
        "periods": periods,
        "view": _with_quantities(billing_view(tenant, now=now)),
        "entitlements": entitlements,
        "invoices": _invoices(tenant),
        "balances": [(currency, money(amount, currency)) for currency, amount in sorted(balances.items())],
        "expiring": expiring,
        "ledger": [
            {"entry": e, "amount": money(e.amount, e.currency)}
            for e in CreditEntry.objects.filter(tenant=tenant)
            .select_related("invoice")
            .order_by("-created_at", "-pk")[:50]
        ],
        "grants": [
            {"grant": g, "amount": quantity_display(g.amount)}  # "—" for a feature switched on
            for g in Grant.objects.filter(tenant=tenant).select_related("feature").order_by("-created_at")
        ],
        "approvals": list(ApprovalRequest.objects.filter(tenant=tenant).order_by("-created_at")[:20]),
        "timeline": [h for h in _timeline(tenant, subscriptions) if see_money or not h.money],
        "now": now,
        "currency": live.plan_version.currency if live else tenant.currency,
    }
