"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>…]`,
each v1 an HMAC-SHA256 of "<t>.<raw body>" under the endpoint's signing secret.

Here, beside the adapter, because only invoicing.providers imports stripe; the HMAC
comparison is stripe-python's own, not a copy of it. The intake is webhooks.views.
"""

from __future__ import annotations

import time

import stripe

# Stripe's recommended window. It is applied both ways: stripe-python refuses only
# timestamps too far in the past, so a captured request signed with a future timestamp
# would otherwise stay replayable for as long as that timestamp lies ahead.
TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The request is not provably from Stripe, or not from now."""


def _timestamp(header: str) -> int:
    values = [item.split("=", 1)[1] for item in header.split(",") if item.startswith("t=")]
    if len(values) != 1 or not values[0].isdigit():
        raise InvalidSignature("The Stripe-Signature header has no valid timestamp.")
    return int(values[0])


def verify(*, body: bytes, header: str, secret: str) -> None:
    """Raise InvalidSignature unless `header` signs exactly `body` with `secret`, within
    TOLERANCE_SECONDS of now in either direction."""
    if not secret:
        raise InvalidSignature("No webhook signing secret is configured.")
    if not header:
        raise InvalidSignature("The Stripe-Signature header is missing.")
    timestamp = _timestamp(header)
    if timestamp > time.time() + TOLERANCE_SECONDS:
        raise InvalidSignature("The signature's timestamp is in the future.")
    try:
        # stripe-python signs the text form of the body; a body that is not UTF-8 cannot match.
        payload = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSignature("The body is not UTF-8.") from exc
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        # Its first sentence says which check failed; the rest is advice for integrators.
        raise InvalidSignature(str(exc).split(". ")[0].rstrip(".") + ".") from exc
