"""What each Stripe event type does to billing state.

A handler runs inside the transaction that marks its event processed, so its database
effect commits exactly once. Handlers read current state from Stripe rather than trusting
the payload, which makes them independent of delivery order. Event types with no handler
are stored and marked processed with no effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models import StripeEvent

Handler = Callable[[StripeEvent], None]

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
def invoice_changed(event: StripeEvent) -> None:
    from invoicing.payments import invoice_sync_from_stripe

    invoice_sync_from_stripe(stripe_invoice_id=object_id(event))


@handles("charge.refunded")
def charge_refunded(event: StripeEvent) -> None:
    from invoicing.payments import charge_refund_sync

    charge_refund_sync(stripe_charge_id=object_id(event))


@handles("checkout.session.completed")
def checkout_session_completed(event: StripeEvent) -> None:
    from invoicing.payments import checkout_session_completed as complete

    complete(session_id=object_id(event))
