"""What the payment provider hands back, in our terms: plain values, Decimal money, no
`stripe` objects. Importing this module does not import `stripe`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


class ProviderError(Exception):
    """The payment provider refused or failed a call."""


class ProviderUnavailable(ProviderError):
    """Unreachable, rate limited or failing on its side (5xx): retry later, with the same keys."""


class ProviderRejected(ProviderError):
    """The request itself was refused (invalid request, card declined, auth): retrying changes nothing.
    `status` is the provider's HTTP status (404: it has no such object), 0 when it gave none."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ProviderDeclined(ProviderRejected):
    """The customer's card was declined: a payment attempt that failed, not a broken request."""


@dataclass(frozen=True)
class PushedInvoice:
    stripe_invoice_id: str
    status: str  # draft | open | paid | void | uncollectible
    stripe_number: str  # Stripe's own number ("" while a draft)
    total: Decimal
    # The tax Stripe computed (Stripe Tax), as (description, amount) per tax line.
    taxes: list[tuple[str, Decimal]] = field(default_factory=list)


@dataclass(frozen=True)
class RemoteInvoice:
    stripe_invoice_id: str
    status: str  # draft | open | paid | void | uncollectible
    stripe_number: str
    currency: str
    total: Decimal
    amount_paid: Decimal
    attempt_count: int
    last_payment_error: str
    billing_invoice_id: int | None
    paid_at: datetime | None = None
    voided_at: datetime | None = None
    uncollectible_at: datetime | None = None

    @property
    def payment_failed(self) -> bool:
        """Open with at least one failed collection attempt."""
        return self.status == "open" and self.attempt_count > 0


@dataclass(frozen=True)
class RemoteCharge:
    charge_id: str
    currency: str
    amount: Decimal
    amount_refunded: Decimal
    refunded: bool
    payment_intent: str
    status: str = ""  # succeeded | pending | failed
    customer: str = ""


@dataclass(frozen=True)
class RemoteRefund:
    refund_id: str
    status: str  # pending | requires_action | succeeded | failed | canceled
    currency: str
    amount: Decimal
    charge_id: str
    payment_intent: str = ""
    failure_reason: str = ""  # Stripe's code when failed (lost_or_stolen_card, …), else ""
    billing_refund_id: int | None = None  # ours, from the metadata we stamp on it


@dataclass(frozen=True)
class RemoteInvoicePayment:
    """A payment Stripe allocated to an invoice: what a refund of the invoice goes back through."""

    payment_id: str
    status: str  # open | paid | canceled
    currency: str
    amount_paid: Decimal
    payment_intent: str  # the payment intent, or "" when the payment is a bare charge
    charge_id: str


@dataclass(frozen=True)
class RemoteCheckoutSession:
    session_id: str
    status: str  # open | complete | expired
    mode: str
    customer: str
    setup_intent: str
    url: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MirrorSync:
    """What a mirror sync did: objects synced per kind, the ids Stripe listed (only those
    are compared: a mirror row Stripe no longer lists, a draft deleted there, is not), and
    each one dj-stripe could not sync as (object id, error)."""

    synced: dict[str, int]
    failed: list[tuple[str, str]]
    seen: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Mirrored:
    """dj-stripe's mirror of a window of Stripe, in our terms (the reconciliation's other side)."""

    invoices: list[RemoteInvoice]
    charges: list[RemoteCharge]
    refunds: list[RemoteRefund]
