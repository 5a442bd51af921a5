"""What each kind of approval request does, by the lower apps' own services.

Every kind has one `run`: it calls the real service (credit_grant, credit_note_issue, the
refund services, grant_create, subscription_extend_trial, subscription_change_plan) and
says what it did. The same code serves both moments:

- `validate(tenant, payload)`, the dry run when a request or proposal arrives: `run`
  inside a transaction (a savepoint, when one is open) that is always rolled back. So the
  rules are exactly the service's, with its own error codes, and nothing is written: the
  rows, the audit entries and the gapless numbers it took go back, its row locks are
  released with the savepoint, and the work it queued after commit is dropped with it.
  (Primary-key sequences are not transactional: a dry run may skip ids. Never numbers.)
- `execute(tenant, payload, actor)`, on approval: `run` for real, in the approval's
  transaction, with the approver and the requester in `actor`.

A payload is a JSON object; `clean` checks its shape (unknown keys refused) and returns it
normalised, which is what is stored and compared for idempotency. Shapes:

    credit            {"amount": "600.00", "currency": "USD"}            (currency: the tenant's if omitted)
    credit_note       {"invoice": "INV-2026-000042"}                      everything left to credit
                      {"invoice": …, "amount": "120.00"}                  spread over the lines
                      {"invoice": …, "lines": {"1": "20.00", "3": "5.00"}} by line position
    refund            {"invoice": "INV-2026-000042", "amount": "600.00"}
    grant             {"feature": "ai_tokens", "kind": "extra_limit", "amount": "1000000",
                       "expires_at": "2026-12-31T00:00:00Z"}             or kind "enable", no amount
    trial_extension   {"days": 7}
    plan_change       {"plan": "team", "when": "now" | "period_end"}      (when: the service's default if omitted)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User

from billing_project.audit import system_user
from billing_project.dry_run import dry_run
from billing_project.errors import InvalidRequest, invalid_field
from billing_project.money import Money, exponent, format_decimal, normalize_currency, parse_decimal, round_line
from entitlements.models import Grant
from entitlements.services import grant_create
from invoicing.corrections import credit_room, refunds_in_flight
from invoicing.ledger import credit_balance, credit_grant
from invoicing.models import Invoice
from invoicing.refunds import refund_note_lines
from invoicing.services import credit_note_issue, refund_approve_ready, refund_cancel, refund_request, refundable
from plans.models import Feature
from subscriptions.models import LIVE_STATUSES, Tenant
from subscriptions.services import TRIAL_EXTENSION_MAX_DAYS, subscription_change_plan, subscription_extend_trial


def money_text(amount: Decimal, currency: str) -> str:
    """An amount as finance reads it: the currency's precision, thousands separated ("75,000 JPY")."""
    return f"{amount:,.{exponent(currency)}f} {currency}"


def quantity_text(value: Decimal) -> str:
    whole, dot, frac = format_decimal(value).partition(".")
    return f"{int(whole):,}{dot}{frac}"


@dataclass(frozen=True)
class Plan:
    """What approving would do: the money it moves (None when it moves none by itself),
    a sentence for the approver, and the same in structured form (lines, proration)."""

    description: str
    amount: Money | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Actor:
    """Who acts and why, as the services record it. `label` names both people on approval
    ("staff:bob approving staff:ann"); `user` is the approver (None in a dry run)."""

    label: str
    reason: str
    user: User | None = None
    request_id: int | None = None


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    result: dict[str, Any]


# ---------------------------------------------------------------- payload helpers
def _fields(payload: Any, required: set[str], optional: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise invalid_field("payload", "The payload is a JSON object.")
    unknown = sorted(set(payload) - required - (optional or set()))
    if unknown:
        raise invalid_field(f"payload.{unknown[0]}", f"Unknown field {unknown[0]!r} for this kind.")
    missing = sorted(required - set(payload))
    if missing:
        raise invalid_field(f"payload.{missing[0]}", "This field is required.")
    return payload


# no money the service moves comes near it; beyond, the ledger's columns would overflow
AMOUNT_LIMIT = Decimal(10) ** 15


def _amount(value: Any, name: str = "amount") -> Decimal:
    if isinstance(value, str) and not value.isascii():
        raise invalid_field(f"payload.{name}", "Digits 0-9 and a decimal point only.")
    try:
        amount = parse_decimal(value)
    except ValueError:
        raise invalid_field(
            f"payload.{name}", f"{str(value)[:40]!r} is not a decimal amount (send a string)."
        ) from None
    if not amount.is_finite() or abs(amount) >= AMOUNT_LIMIT:
        raise InvalidRequest(
            f"An amount below {AMOUNT_LIMIT:,.0f}.", code="invalid_amount", details={"field": f"payload.{name}"}
        )
    return amount


def _instant(value: Any, name: str) -> str:
    """An ISO 8601 time with its offset, kept in UTC with a Z."""
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("no offset")
        return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except (ValueError, OverflowError):  # the calendar's edge with an offset overflows in UTC
        raise invalid_field(f"payload.{name}", "An ISO 8601 time with its offset.") from None


def _from_instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(f"payload.{name}", "A non-empty string.")
    return value.strip()


def _invoice(tenant: Tenant, number: str) -> Invoice:
    invoice = Invoice.objects.filter(tenant=tenant, number=number).first()
    if invoice is None:
        raise InvalidRequest(
            f"{tenant.external_id} has no invoice {number!r}.", code="unknown_invoice", details={"invoice": number}
        )
    return invoice


class ApprovalKind:
    """One kind of request. Subclasses give `clean` and `run`; the rest is shared."""

    code: str = ""
    moves_money: bool = False  # credits, refunds, credit notes: thresholds apply to staff requests
    proposable: bool = True  # may an agent's key propose it (an erasure: staff only)

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        raise NotImplementedError

    def check_new(self, tenant: Tenant, reason: str) -> None:
        """What refuses a new request of this kind at once, beyond its dry run (under the
        tenant's lock): nothing, but for an erasure."""

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        raise NotImplementedError

    def validate(self, tenant: Tenant, payload: Any) -> Plan:
        """The dry run: the service's own rules and errors, nothing written."""
        cleaned = self.clean(tenant, payload)
        actor = Actor(label="dry-run", reason="dry run of an approval request")
        return dry_run(lambda: self.run(tenant, cleaned, actor, {})).plan

    def execute(
        self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self.run(tenant, self.clean(tenant, payload), actor, prepared or {}).result

    def on_request(self, *, tenant: Tenant, payload: dict[str, Any], actor: Actor) -> dict[str, Any]:
        """What a staff member's request prepares, in the request's transaction (kept in
        `result`): nothing, but for a refund, which is recorded awaiting approval."""
        return {}

    def on_close(self, *, prepared: Mapping[str, Any], reason: str) -> None:
        """The request was rejected or expired: undo what on_request prepared."""

    settled: frozenset[str] = frozenset()  # payload fields settle() may fill in

    def settle(self, payload: dict[str, Any], plan: Plan) -> dict[str, Any]:
        """The payload as the approver was shown it: what the dry run decided that the
        requester left open is fixed here, so approval does exactly what was described."""
        return payload


# ---------------------------------------------------------------- money
class CreditKind(ApprovalKind):
    code = "credit"
    moves_money = True

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        data = _fields(payload, {"amount"}, {"currency", "expires_at"})
        currency = normalize_currency(data.get("currency") or tenant.currency)
        cleaned = {"amount": format_decimal(_amount(data["amount"])), "currency": currency}
        if data.get("expires_at") is not None:
            cleaned["expires_at"] = _instant(data["expires_at"], "expires_at")
        return cleaned

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        amount = Money(Decimal(payload["amount"]), payload["currency"])
        expires = _from_instant(payload["expires_at"]) if "expires_at" in payload else None
        before = credit_balance(tenant=tenant, currency=amount.currency)
        entry = credit_grant(tenant=tenant, amount=amount, reason=actor.reason, actor=actor.label, expires_at=expires)
        after = before + entry.amount
        until = f", unused by {payload['expires_at']} it expires" if expires else ""
        text = (
            f"Grant {money_text(amount.amount, amount.currency)} of credit to {tenant.external_id}{until} "
            f"(credit balance {money_text(before, amount.currency)} → {money_text(after, amount.currency)})."
        )
        return Outcome(Plan(text, amount, {"balance_after": format_decimal(after)}), {"credit_entry": entry.pk})


class CreditNoteKind(ApprovalKind):
    code = "credit_note"
    moves_money = True

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        data = _fields(payload, {"invoice"}, {"amount", "lines"})
        cleaned: dict[str, Any] = {"invoice": _text(data["invoice"], "invoice")}
        if "amount" in data and "lines" in data:
            raise invalid_field("payload.lines", "Give lines or an amount, not both.")
        if "amount" in data:
            cleaned["amount"] = format_decimal(_amount(data["amount"]))
        if "lines" in data:
            lines = data["lines"]
            if not isinstance(lines, dict) or not lines:
                raise invalid_field("payload.lines", 'Lines map a line position to an amount: {"1": "20.00"}.')
            parsed = {}
            for position, amount in lines.items():
                if not str(position).isdigit():
                    raise invalid_field("payload.lines", f"{str(position)[:20]!r} is not a line position.")
                parsed[str(int(position))] = format_decimal(_amount(amount, f"lines.{position}"))
            cleaned["lines"] = dict(sorted(parsed.items(), key=lambda item: int(item[0])))
        return cleaned

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        invoice = _invoice(tenant, payload["invoice"])
        lines: dict[int, Decimal] | None = None
        if "lines" in payload:
            lines = {int(pos): Decimal(amount) for pos, amount in payload["lines"].items()}
        elif "amount" in payload:
            lines = self._spread(invoice, Decimal(payload["amount"]))
        note = credit_note_issue(invoice_id=invoice.pk, lines=lines, reason=actor.reason, actor=actor.label)
        rows = list(note.lines.select_related("invoice_line").order_by("invoice_line__position"))
        note_lines = [
            {"position": x.invoice_line.position, "description": x.description, "amount": format_decimal(x.amount)}
            for x in rows
        ]
        listed = "; ".join(
            f"line {x.invoice_line.position} {x.description}: {money_text(x.amount, note.currency)}" for x in rows
        )
        text = (
            f"Issue a credit note of {money_text(note.total, note.currency)} on {invoice.number} ({listed}), "
            f"credited to {tenant.external_id}'s balance."
        )
        plan = Plan(text, Money(note.total, note.currency), {"invoice": invoice.number, "lines": note_lines})
        return Outcome(plan, {"credit_note": note.pk, "number": note.number})

    @staticmethod
    def _spread(invoice: Invoice, amount: Decimal) -> dict[int, Decimal]:
        """An amount over the invoice's charge lines, in proportion to what each has left (as a
        refund's credit note is), under the invoice's lock (credit_note_issue takes it again)."""
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        if invoice.status != Invoice.Status.PAID:
            return {}  # credit_note_issue refuses it with its own code
        if amount <= 0 or round_line(amount, invoice.currency) != amount:
            raise InvalidRequest(
                "A credit note is a positive amount in whole minor units.",
                code="invalid_amount",
                details={"amount": str(amount)},
            )
        left = credit_room(invoice=invoice).total - refunds_in_flight(invoice=invoice)
        if amount > left:
            raise InvalidRequest(
                f"{invoice.number} can be credited up to {left} {invoice.currency} in all.",
                code="invalid_amount",
                details={"amount": str(amount), "creditable": str(left)},
            )
        return refund_note_lines(invoice=invoice, amount=amount)


class RefundKind(ApprovalKind):
    """A staff member's refund is recorded when requested, awaiting approval (its amount is
    reserved, so refunds raced past it cannot exceed what was paid); approving moves it on
    (refund_approve_ready, which queues its submission to Stripe), rejecting or expiring
    cancels it. An agent's proposal changes nothing until approved: the refund is recorded
    then, and moved on at once."""

    code = "refund"
    moves_money = True

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        data = _fields(payload, {"invoice", "amount"}, {"payout_reference"})
        cleaned = {"invoice": _text(data["invoice"], "invoice"), "amount": format_decimal(_amount(data["amount"]))}
        if data.get("payout_reference"):  # an invoice paid outside Stripe: the bank transfer that pays it back
            cleaned["payout_reference"] = _text(data["payout_reference"], "payout_reference")
        return cleaned

    def _request(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, key: str) -> Any:
        invoice = _invoice(tenant, payload["invoice"])
        return refund_request(
            invoice_id=invoice.pk,
            amount=Money(Decimal(payload["amount"]), invoice.currency),
            reason=actor.reason,
            actor=actor.label,
            request_key=key,
            awaiting_approval=True,
            payout_reference=payload.get("payout_reference", ""),
        )

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        if "refund" in prepared:
            refund = refund_approve_ready(refund_id=prepared["refund"])
        else:
            refund = self._request(tenant, payload, actor, key=f"approval-{actor.request_id or 'dry-run'}")
            if actor.user is not None:  # approving an agent's proposal: recorded and approved at once
                refund = refund_approve_ready(refund_id=refund.pk)
        invoice = refund.invoice
        left = refundable(invoice=invoice, excluding=refund) - refund.amount
        text = (
            f"Refund {money_text(refund.amount, refund.currency)} of {invoice.number} "
            f"{'through Stripe' if refund.method == 'stripe' else 'by bank transfer ' + refund.payout_reference} "
            f"(paid {money_text(invoice.total, invoice.currency)}; refundable after: "
            f"{money_text(left, invoice.currency)}), with a credit note once it is paid back."
        )
        plan = Plan(text, Money(refund.amount, refund.currency), {"invoice": invoice.number})
        return Outcome(plan, {"refund": refund.pk})

    def on_request(self, *, tenant: Tenant, payload: dict[str, Any], actor: Actor) -> dict[str, Any]:
        refund = self._request(tenant, self.clean(tenant, payload), actor, key=f"approval-{actor.request_id}")
        return {"refund": refund.pk}

    def on_close(self, *, prepared: Mapping[str, Any], reason: str) -> None:
        if "refund" in prepared:
            refund_cancel(refund_id=prepared["refund"], reason=reason)


# ---------------------------------------------------------------- no money of their own
class GrantKind(ApprovalKind):
    code = "grant"

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        data = _fields(payload, {"feature", "kind", "expires_at"}, {"amount"})
        kind = data["kind"]
        if kind not in Grant.Kind.values:
            raise invalid_field("payload.kind", f"One of {', '.join(Grant.Kind.values)}.")
        cleaned: dict[str, Any] = {"feature": _text(data["feature"], "feature"), "kind": kind}
        if kind == Grant.Kind.EXTRA_LIMIT:
            if "amount" not in data:
                raise invalid_field("payload.amount", "An extra limit needs an amount.")
            cleaned["amount"] = format_decimal(_amount(data["amount"]))
        elif "amount" in data:
            raise invalid_field("payload.amount", "Switching a feature on takes no amount.")
        cleaned["expires_at"] = _instant(data["expires_at"], "expires_at")
        return cleaned

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        feature = Feature.objects.filter(code=payload["feature"]).first()
        if feature is None:
            raise InvalidRequest(
                f"No feature {payload['feature']!r}.", code="unknown_feature", details={"feature": payload["feature"]}
            )
        amount = Decimal(payload["amount"]) if "amount" in payload else None
        expires = _from_instant(payload["expires_at"])
        grant = grant_create(
            tenant=tenant,
            feature=feature,
            kind=payload["kind"],
            amount=amount,
            reason=actor.reason,
            expires_at=expires,
            created_by=actor.user or system_user(),
        )
        what = f"{quantity_text(amount)} more {feature.name}" if amount is not None else f"{feature.name} switched on"
        text = f"Give {tenant.external_id} {what} until {expires:%Y-%m-%d %H:%M} UTC (a grant on top of its plan)."
        return Outcome(Plan(text), {"grant": grant.pk})


class TrialExtensionKind(ApprovalKind):
    code = "trial_extension"

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        days = _fields(payload, {"days"})["days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= TRIAL_EXTENSION_MAX_DAYS:
            raise invalid_field("payload.days", f"Whole days, 1 to {TRIAL_EXTENSION_MAX_DAYS}.")
        return {"days": days}

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        sub = subscription_extend_trial(tenant=tenant, days=payload["days"], actor=actor.label, reason=actor.reason)
        event = sub.events.filter(action="extend_trial").latest("id")
        assert sub.trial_end is not None  # noqa: S101  (the service extends only a trial)
        was = datetime.fromisoformat(event.data["from"])
        text = (
            f"Extend {tenant.external_id}'s trial by {payload['days']} days: it ends "
            f"{sub.trial_end:%Y-%m-%d %H:%M} UTC instead of {was:%Y-%m-%d %H:%M} UTC."
        )
        return Outcome(Plan(text, details={"trial_end": sub.trial_end.isoformat()}), {"subscription_event": event.pk})


class PlanChangeKind(ApprovalKind):
    code = "plan_change"
    settled = frozenset({"when"})

    def clean(self, tenant: Tenant, payload: Any) -> dict[str, Any]:
        data = _fields(payload, {"plan"}, {"when"})
        cleaned: dict[str, Any] = {"plan": _text(data["plan"], "plan")}
        when = data.get("when")
        if when is not None:
            if when not in ("now", "period_end"):
                raise invalid_field("payload.when", "now or period_end.")
            cleaned["when"] = when
        return cleaned

    def settle(self, payload: dict[str, Any], plan: Plan) -> dict[str, Any]:
        # "when" left out is decided by the change's direction now (upgrade now, downgrade at
        # the period end); approving later must not decide it again differently
        if "when" in payload:
            return payload
        return {**payload, "when": "now" if plan.details.get("applied") else "period_end"}

    def run(self, tenant: Tenant, payload: dict[str, Any], actor: Actor, prepared: Mapping[str, Any]) -> Outcome:
        old = tenant.subscriptions.filter(status__in=LIVE_STATUSES).select_related("plan_version").first()
        change = subscription_change_plan(
            tenant=tenant, plan_code=payload["plan"], when=payload.get("when"), actor=actor.label
        )
        sub = change.subscription
        currency = sub.plan_version.currency
        target = sub.plan_version if change.applied else sub.scheduled_plan_version
        assert target is not None  # noqa: S101  (scheduled when not applied)
        proration = [
            {"kind": x.kind, "description": x.description, "amount": format_decimal(x.amount)} for x in change.proration
        ]
        prorated = "; ".join(
            f"{x.kind} {money_text(round_line(x.amount, currency), currency)}" for x in change.proration
        )
        when = "now" if change.applied else f"at the period end ({change.effective_at:%Y-%m-%d %H:%M} UTC)"
        text = f"Move {tenant.external_id} from {old.plan_version if old else '—'} to {target} {when}" + (
            f", prorated: {prorated}." if prorated else "."
        )
        details = {"applied": change.applied, "effective_at": change.effective_at.isoformat(), "proration": proration}
        details["plan_version"] = target.pk
        event = sub.events.latest("id")
        return Outcome(Plan(text, details=details), {"subscription_event": event.pk})


KINDS: dict[str, ApprovalKind] = {
    kind.code: kind
    for kind in (CreditKind(), CreditNoteKind(), RefundKind(), GrantKind(), TrialExtensionKind(), PlanChangeKind())
}


def kind_proposable(code: str) -> bool:
    """Whether an agent may propose `code` (kinds registered by higher apps are asked for
    by name: privacy's erasure is never proposable)."""
    kind = KINDS.get(code)
    return kind.proposable if kind is not None else code != "erasure"


def kind_register(kind: ApprovalKind) -> None:
    """A higher app's kind (privacy's erasure), registered from its AppConfig.ready: this app
    runs it without importing that app."""
    KINDS[kind.code] = kind


def kind_for(code: str) -> ApprovalKind:
    kind = KINDS.get(code)
    if kind is None:
        raise invalid_field("kind", f"One of {', '.join(sorted(KINDS))}.")
    return kind
