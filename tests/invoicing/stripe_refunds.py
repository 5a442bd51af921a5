"""Stripe's refund endpoints, answered from recorded responses (API version
STRIPE_API_VERSION) through stripe-python's own HTTP layer (`responses`): the invoice's
payments list, refund create (honouring the Idempotency-Key as Stripe does within its
24-hour window), retrieve and list. A refund Stripe makes is the recorded one with what the
request asked for (amount, metadata) and a new id; a test moves it on (`settle`) as Stripe
would, before the webhook that reads it.

Also the paid invoice to refund: at Stripe, paid through the recorded payment intent."""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from invoicing.models import Invoice
from invoicing.services import invoice_mark_paid
from tests.invoicing.test_stripe_adapter import API, STRIPE_INVOICE, finalized, recorded

INTENT = "pi_3SxZ00Qa7bC3dE4f"
CHARGE = "ch_3SxZ00Qa7bC3dE4f"
RECORDED = {"succeeded": "refund", "pending": "refund_pending", "failed": "refund_failed"}


def paid_at_stripe(
    tenant: Any, amounts: tuple[str, ...] = ("49.00",), stripe_invoice_id: str = STRIPE_INVOICE
) -> Invoice:
    """A finalized invoice of `amounts`, pushed to Stripe and paid there."""
    invoice = finalized(tenant, amounts=amounts)
    Invoice.objects.filter(pk=invoice.pk).update(stripe_invoice_id=stripe_invoice_id)
    return invoice_mark_paid(invoice_id=invoice.pk, actor="stripe")


@dataclass
class StripeRefunds:
    rsps: responses.RequestsMock
    status: str = "pending"  # what Stripe answers a new refund with
    refusal: tuple[int, dict[str, Any]] | None = None  # (HTTP status, error body) for every create
    down: bool = False  # every create: the connection fails
    made: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rsps.get(f"{API}/v1/invoice_payments", json=recorded("invoice_payment_list"))
        self.rsps.add_callback("POST", f"{API}/v1/refunds", callback=self._create)
        self.rsps.add_callback("GET", f"{API}/v1/refunds", callback=self._list)
        self.rsps.add_callback("GET", re.compile(rf"{re.escape(API)}/v1/refunds/re_\w+"), callback=self._retrieve)

    # what a test looks at
    def creates(self) -> list[Any]:
        return [c for c in self.rsps.calls if c.request.method == "POST" and str(c.request.url).endswith("/v1/refunds")]

    def one(self) -> dict[str, Any]:
        (obj,) = self.made.values()
        return obj

    def settle(self, refund_id: str, status: str, failure_reason: str | None = None) -> None:
        """Stripe moves the refund on (succeeded, failed, canceled)."""
        self.made[refund_id].update(status=status, failure_reason=failure_reason)

    def stripe_made(self, *, amount: Decimal, billing_refund_id: int, status: str = "pending") -> dict[str, Any]:
        """A refund already at Stripe for ours (an earlier attempt whose answer was lost)."""
        return self._make(
            status, {"amount": [str(int(amount * 100))], "metadata[billing_refund_id]": [str(billing_refund_id)]}
        )

    # Stripe
    def _make(self, status: str, form: dict[str, list[str]]) -> dict[str, Any]:
        metadata = {k[len("metadata[") : -1]: v[0] for k, v in form.items() if k.startswith("metadata[")}
        obj = recorded(
            RECORDED[status],
            id=f"re_3SxZ{next(self._ids):04d}Qa7bC3dE4f",
            amount=int(form["amount"][0]),
            metadata=metadata,
        )
        self.made[obj["id"]] = obj
        return obj

    def _create(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.down:
            raise requests.ConnectionError("connection refused")
        if self.refusal is not None:
            return self.refusal[0], {}, json.dumps(self.refusal[1])
        body = request.body if isinstance(request.body, str) else request.body.decode()
        form = parse_qs(body)
        key = request.headers.get("Idempotency-Key", "")
        with self._lock:
            if key in self.keys:  # Stripe: the same key within 24 h answers the first result
                return 200, {}, json.dumps(self.made[self.keys[key]])
            obj = self._make(self.status, form)
            self.keys[key] = obj["id"]
        return 200, {}, json.dumps(obj)

    def _list(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url).query)
        wanted = query.get("payment_intent", query.get("charge", [""]))[0]
        data = [obj for obj in self.made.values() if wanted in (obj.get("payment_intent"), obj.get("charge"))]
        return 200, {}, json.dumps(recorded("refund_list_empty", data=data))

    def _retrieve(self, request: Any) -> tuple[int, dict[str, str], str]:
        refund_id = urlsplit(request.url).path.rsplit("/", 1)[-1]
        if refund_id not in self.made:
            error = {
                "error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such refund"}
            }
            return 404, {}, json.dumps(error)
        return 200, {}, json.dumps(self.made[refund_id])
