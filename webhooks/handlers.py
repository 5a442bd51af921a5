"""What each Stripe event type does to billing state.

A handler runs in two steps, so that no Stripe call is made inside a transaction or under
a row lock (a call to Stripe can take seconds; meanwhile the lock would queue every other
delivery of the event, and the open transaction would hold back the usage aggregation
watermark):

1. the handler itself reads the object's current state from Stripe, with no transaction
   open and nothing locked, and returns what applies it;
2. that apply runs under the event's row lock, inside the transaction that marks the
   event processed, so its database effect commits exactly once.

Reading current state rather than trusting the payload makes handlers independent of
delivery order; a state read a moment before another delivery applied a newer one is
harmless, since every apply only moves forward (a paid invoice stays paid). Event types
with no handler are stored and marked processed with no effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models import StripeEvent

Apply = Callable[[], object]
Handler = Callable[[StripeEvent], Apply]

HANDLERS: dict[str, Handler] = {}


def handles(*event_types: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of these event types."""

    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            # Two handlers for one type would make which one runs depend on import order.
            if event_type in HANDLERS:
                raise ValueError(f"{event_type} already has a handler: {HANDLERS[event_type].__qualname__}")
            HANDLERS[event_type] = handler
        return handler

    return register


def object_id(event: StripeEvent) -> str:
    """The id of the Stripe object the event is about (data.object.id)."""
    obj: Any = event.payload["data"]["object"]
    value = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{event.stripe_id} ({event.type}) has no data.object.id")
    return value


# invoicing.payments is imported inside each handler so that this registry loads on its own
# (the intake stores events whatever invoicing provides).


@handles("invoice.paid", "invoice.payment_failed", "invoice.voided", "invoice.marked_uncollectible")
def invoice_changed(event: StripeEvent) -> Apply:
    from invoicing.payments import invoice_sync_apply, invoice_sync_fetch

    remote = invoice_sync_fetch(stripe_invoice_id=object_id(event))
    return lambda: invoice_sync_apply(remote=remote)


@handles("charge.refunded")
def charge_refunded(event: StripeEvent) -> Apply:
    from invoicing.refunds import refund_charge_fetch, refunds_sync_apply

    remotes = refund_charge_fetch(stripe_charge_id=object_id(event))  # the charge's refunds, as Stripe has them
    return lambda: refunds_sync_apply(remotes=remotes)


@handles("refund.created", "refund.updated", "refund.failed")
def refund_changed(event: StripeEvent) -> Apply:
    from invoicing.refunds import refund_sync_apply, refund_sync_fetch

    remote = refund_sync_fetch(stripe_refund_id=object_id(event))
    return lambda: refund_sync_apply(remote=remote)


@handles("checkout.session.completed")
def checkout_session_completed(event: StripeEvent) -> Apply:
    from invoicing.payments import checkout_session_apply, checkout_session_fetch

    session = checkout_session_fetch(session_id=object_id(event))
    return lambda: checkout_session_apply(session=session)
