"""The console's money actions: a form each, a reason always, one service call, audited by
the app that owns the money, and the result shown. Above APPROVAL_THRESHOLDS a credit,
refund or credit note is not done but asked for (approvals/): a finance-approver who did
not ask decides, and approving runs the very same service.

Each form carries a one-time token: ten submissions of one form (a double click, a
browser's retry) act once (StaffAction's unique token), and each answers with what the
first did."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals.kinds import Actor, kind_for, money_text
from approvals.services import approval_request, needs_approval, staff_label
from billing_project.errors import BillingError, Conflict, InvalidRequest
from billing_project.money import Money, exponent, normalize_currency
from entitlements.models import Grant
from entitlements.services import grant_create, grant_revoke
from invoicing.collection import invoice_mark_uncollectible, invoice_retry_payment_now, invoice_void
from invoicing.models import Invoice
from invoicing.refunds import refund_request, refundable
from plans.models import Feature
from subscriptions.models import Tenant
from subscriptions.services import subscription_extend_trial

from .models import StaffAction


class AmountField(forms.DecimalField):
    """A decimal typed as finance types it: ASCII digits (Python's Decimal would also read
    "١٢" as 12, which no one means in an amount of money)."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and not value.isascii():
            raise forms.ValidationError("Digits 0-9 and a decimal point only.", code="invalid")
        return super().to_python(value)


class ReasonForm(forms.Form):
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)  # StaffAction.token
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="Why (kept in the audit trail; the approver reads it)."
    )


class AmountForm(ReasonForm):
    amount = AmountField(min_value=Decimal("0.000001"), decimal_places=6, max_digits=20)


class CreditForm(AmountForm):
    currency = forms.CharField(max_length=3, help_text="ISO 4217, e.g. USD.")
    expires_at = forms.DateTimeField(
        required=False, help_text="Optional. UTC, YYYY-MM-DD HH:MM: what is unused then expires."
    )


class OptionalAmountForm(ReasonForm):
    amount = AmountField(
        required=False,
        min_value=Decimal("0.000001"),
        decimal_places=6,
        max_digits=20,
        help_text="Empty: everything left to credit.",
    )


class PayoutForm(AmountForm):
    payout_reference = forms.CharField(
        required=False,
        max_length=200,
        help_text="For an invoice paid outside Stripe: the bank transfer that pays the money back.",
    )


class TrialForm(ReasonForm):
    days = forms.IntegerField(min_value=1, max_value=90)


class GrantForm(ReasonForm):
    feature = forms.ModelChoiceField(queryset=Feature.objects.order_by("code"), to_field_name="code")
    kind = forms.ChoiceField(choices=Grant.Kind.choices)
    amount = AmountField(required=False, min_value=Decimal("0.000001"), decimal_places=6, max_digits=30)
    expires_at = forms.DateTimeField(help_text="UTC, YYYY-MM-DD HH:MM.")


@dataclass(frozen=True)
class Target:
    """What an action acts on: the tenant, and an invoice or a grant of it when it needs one."""

    tenant: Tenant
    invoice: Invoice | None = None
    grant: Grant | None = None


@dataclass(frozen=True)
class Done:
    """What the page tells the staff member: done, or asked for approval."""

    message: str
    approval: int | None = None


def _actor(user: User, reason: str) -> Actor:
    return Actor(label=staff_label(user), reason=reason, user=user)


def _or_ask(
    *,
    user: User,
    target: Target,
    kind: str,
    payload: dict[str, Any],
    amount: Money,
    reason: str,
    token: str,
    do: Callable[[], str],
) -> Done:
    """Do it, or above the threshold ask for a second person's approval instead."""
    if needs_approval(amount=amount):
        request = approval_request(
            kind=kind, tenant=target.tenant, payload=payload, reason=reason, requested_by=user, idempotency_key=token
        )
        return Done(f"Asked for approval (above the threshold): {request.description}", approval=request.pk)
    return Done(do())


def _credit(user: User, target: Target, data: dict[str, Any]) -> Done:
    currency = normalize_currency(data["currency"])
    amount = Money(data["amount"], currency)
    payload: dict[str, Any] = {"amount": str(data["amount"]), "currency": currency}
    until = ""
    if data.get("expires_at") is not None:
        payload["expires_at"] = data["expires_at"].isoformat()
        until = f", expiring {data['expires_at']:%Y-%m-%d %H:%M} UTC"

    def do() -> str:
        kind_for("credit").execute(target.tenant, payload, _actor(user, data["reason"]))
        return f"Granted {money_text(amount.amount, currency)} of credit{until}."

    return _or_ask(
        user=user,
        target=target,
        kind="credit",
        payload=payload,
        amount=amount,
        reason=data["reason"],
        token=data["token"],
        do=do,
    )


def _refund(user: User, target: Target, data: dict[str, Any]) -> Done:
    invoice = _invoice(target)
    amount = Money(data["amount"], invoice.currency)
    payload = {"invoice": invoice.number, "amount": str(data["amount"])}
    if data.get("payout_reference"):
        payload["payout_reference"] = data["payout_reference"]

    def do() -> str:
        extra = {"payout_reference": data["payout_reference"]} if data.get("payout_reference") else {}
        refund = refund_request(
            invoice_id=invoice.pk,
            amount=amount,
            reason=data["reason"],
            actor=staff_label(user),
            request_key=f"console-{data['token']}",
            **extra,
        )
        shown = money_text(refund.amount, refund.currency)
        if refund.method == "manual":
            return (
                f"Refund of {shown} booked as paid out by you ({refund.payout_reference}); "
                "its credit note follows in a moment."
            )
        return f"Refund of {shown} recorded: it is sent to Stripe now, and succeeds when Stripe confirms it."

    return _or_ask(
        user=user,
        target=target,
        kind="refund",
        payload=payload,
        amount=amount,
        reason=data["reason"],
        token=data["token"],
        do=do,
    )


def _credit_note(user: User, target: Target, data: dict[str, Any]) -> Done:
    invoice = _invoice(target)
    payload: dict[str, Any] = {"invoice": invoice.number}
    if data.get("amount"):
        payload["amount"] = str(data["amount"])
    plan = kind_for("credit_note").validate(target.tenant, payload)  # what it would credit (a dry run)
    amount = plan.amount or Money(Decimal(0), invoice.currency)

    def do() -> str:
        kind_for("credit_note").execute(target.tenant, payload, _actor(user, data["reason"]))
        return f"Credit note issued: {plan.description}"

    return _or_ask(
        user=user,
        target=target,
        kind="credit_note",
        payload=payload,
        amount=amount,
        reason=data["reason"],
        token=data["token"],
        do=do,
    )


def _void(user: User, target: Target, data: dict[str, Any]) -> Done:
    invoice = invoice_void(invoice_id=_invoice(target).pk, reason=data["reason"], actor=staff_label(user))
    return Done(f"Invoice {invoice.number} voided.")


def _uncollectible(user: User, target: Target, data: dict[str, Any]) -> Done:
    invoice = invoice_mark_uncollectible(
        invoice_id=_invoice(target).pk, actor=f"{staff_label(user)}: {data['reason']}", strict=True
    )
    return Done(f"Invoice {invoice.number} marked uncollectible.")


def _retry(user: User, target: Target, data: dict[str, Any]) -> Done:
    invoice = invoice_retry_payment_now(invoice_id=_invoice(target).pk, actor=staff_label(user), reason=data["reason"])
    return Done(f"Payment of {invoice.number} is being retried now.")


def _extend_trial(user: User, target: Target, data: dict[str, Any]) -> Done:
    sub = subscription_extend_trial(
        tenant=target.tenant, days=data["days"], actor=staff_label(user), reason=data["reason"]
    )
    return Done(f"Trial extended by {data['days']} days, to {sub.trial_end:%Y-%m-%d %H:%M} UTC.")


def _add_grant(user: User, target: Target, data: dict[str, Any]) -> Done:
    grant = grant_create(
        tenant=target.tenant,
        feature=data["feature"],
        kind=data["kind"],
        amount=data.get("amount"),
        reason=data["reason"],
        expires_at=data["expires_at"],
        created_by=user,
    )
    return Done(f"Grant added: {grant}.")


def _revoke_grant(user: User, target: Target, data: dict[str, Any]) -> Done:
    if target.grant is None:
        raise InvalidRequest("Choose the grant to revoke.")
    grant_revoke(grant=target.grant)
    return Done(f"Grant revoked: {target.grant}.")


def _erase(user: User, target: Target, data: dict[str, Any]) -> Done:
    """Always four eyes: a finance-approver asks, another decides (privacy/kinds.py)."""
    request = approval_request(
        kind="erasure",
        tenant=target.tenant,
        payload={},
        reason=data["reason"],
        requested_by=user,
        idempotency_key=data["token"],
    )
    return Done(
        f"Asked for approval (an erasure always waits for a second finance-approver): {request.description}", request.pk
    )


def _invoice(target: Target) -> Invoice:
    if target.invoice is None:
        raise InvalidRequest("Choose the invoice.")
    return target.invoice


@dataclass(frozen=True)
class ConsoleAction:
    code: str
    title: str
    permission: str  # the console's own (console/models.py StaffAction)
    form: type[ReasonForm]
    run: Callable[[User, Target, dict[str, Any]], Done]
    needs: str = ""  # "invoice" or "grant"
    warning: str = ""


ACTIONS: dict[str, ConsoleAction] = {
    a.code: a
    for a in (
        ConsoleAction(
            "credit",
            "Grant credit",
            "console.grant_credit",
            CreditForm,
            _credit,
            warning="Credit is used by the tenant's next invoices in that currency.",
        ),
        ConsoleAction(
            "refund",
            "Refund",
            "console.refund_invoice",
            PayoutForm,
            _refund,
            needs="invoice",
            warning="The money goes back to the customer; a credit note corrects the books once it is paid back.",
        ),
        ConsoleAction(
            "credit_note",
            "Issue a credit note",
            "console.issue_credit_note",
            OptionalAmountForm,
            _credit_note,
            needs="invoice",
            warning="The credited amount goes to the tenant's credit balance.",
        ),
        ConsoleAction(
            "void",
            "Void",
            "console.void_invoice",
            ReasonForm,
            _void,
            needs="invoice",
            warning="An open invoice is cancelled; credit it used returns to the balance.",
        ),
        ConsoleAction(
            "uncollectible", "Mark uncollectible", "console.void_invoice", ReasonForm, _uncollectible, needs="invoice"
        ),
        ConsoleAction("retry", "Retry the payment now", "console.retry_payment", ReasonForm, _retry, needs="invoice"),
        ConsoleAction("extend_trial", "Extend the trial", "console.extend_trial", TrialForm, _extend_trial),
        ConsoleAction("add_grant", "Add a grant", "console.manage_grants", GrantForm, _add_grant),
        ConsoleAction(
            "revoke_grant", "Revoke the grant", "console.manage_grants", ReasonForm, _revoke_grant, needs="grant"
        ),
        ConsoleAction(
            "erase",
            "Erase personal data",
            "console.request_erasure",
            ReasonForm,
            _erase,
            warning=(
                "For good: its live subscriptions end (what they owe to now is invoiced at once, and an erasure"
                " that would leave money owed is refused), its keys are revoked, its name and email are"
                " pseudonymised here and at Stripe. Its invoices keep the buyer until the retention period"
                " ends. Another finance-approver must approve."
            ),
        ),
    )
}


def new_token() -> str:
    return secrets.token_urlsafe(24)


def initial(action: ConsoleAction, target: Target, now: datetime) -> dict[str, Any]:
    """The form's starting values: a fresh token, and what finance would most often type."""
    values: dict[str, Any] = {"token": new_token()}
    if action.code == "credit":
        live = target.tenant.subscriptions.filter(status__in=("trialing", "active", "past_due", "suspended")).first()
        values["currency"] = live.plan_version.currency if live else target.tenant.currency
    if action.code == "refund" and target.invoice is not None and target.invoice.status == Invoice.Status.PAID:
        left = refundable(invoice=target.invoice)  # at the currency's precision: 1200.00, not 1200.0000
        values["amount"] = left.quantize(Decimal(1).scaleb(-exponent(target.invoice.currency)))
    if action.code == "add_grant":
        values["expires_at"] = (now + timedelta(days=30)).replace(microsecond=0)
    return values


def _submission(action: ConsoleAction, user: User, target: Target, data: dict[str, Any]) -> str:
    """What a form submitted, as one digest: the same token with anything else is another submission."""
    values = {name: str(value) for name, value in sorted(data.items()) if name != "token"}
    what = [
        action.code,
        user.pk,
        target.tenant.pk,
        target.invoice and target.invoice.pk,
        target.grant and target.grant.pk,
    ]
    return hashlib.sha256(json.dumps([what, values], default=str).encode()).hexdigest()


def perform(*, action: ConsoleAction, user: User, target: Target, data: dict[str, Any]) -> Done:
    """Run the action once per form token: a repeated token answers with what it did; the
    token sent again with other values (edited after Back, another form) is refused, never
    taken for the first submission."""
    if target.tenant.erased_at is not None:
        raise Conflict(
            f"{target.tenant.external_id}'s personal data was erased: nothing more is done for it.",
            code="tenant_erased",
        )
    token = data["token"]
    submission = _submission(action, user, target, data)
    try:
        with transaction.atomic():
            record = StaffAction.objects.create(token=token, kind=action.code, tenant=target.tenant, user=user)
            done = action.run(user, target, data)
            record.outcome = {
                "message": done.message,
                "approval": done.approval,
                "submission": submission,
                "reason": data.get("reason", ""),
                "invoice": target.invoice.pk if target.invoice else None,
                "grant": target.grant.pk if target.grant else None,
            }
            record.save(update_fields=["outcome"])
            return done
    except IntegrityError:
        earlier = StaffAction.objects.filter(token=token).first()
        if earlier is None:
            raise
        if earlier.outcome.get("submission") != submission:
            raise Conflict(
                "This form was already submitted with other values: open the action again to do something else.",
                code="idempotency_conflict",
            ) from None
        return Done(f"Already done: {earlier.outcome.get('message', '')}", approval=earlier.outcome.get("approval"))


def error_text(exc: BillingError) -> str:
    """The service's refusal as a sentence for the form (field keys named as people read them)."""
    fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
    if isinstance(fields, dict) and fields:
        return "; ".join(_field_text(name, message) for name, message in fields.items())
    return exc.message


def _field_text(name: str, message: Any) -> str:
    label = name.removeprefix("payload.")
    if label in ("non_field_errors", "__all__", ""):
        return str(message)
    return f"{label.replace('_', ' ').capitalize()}: {message}"


def now() -> datetime:
    return timezone.now()
