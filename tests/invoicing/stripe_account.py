"""A Stripe account as the reconciliation reads it, answered from recorded responses (API
version STRIPE_API_VERSION) through stripe-python's own HTTP layer (`responses`): the list
endpoints of customers, payment intents, charges, invoices and refunds (honouring
`created[gte]`), their retrieval by id (404 `resource_missing` when absent), an invoice's
payments, and the balance transactions and payment methods dj-stripe fetches beside them.
A test changes what the account holds behind our back, as Stripe's dashboard would."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import responses

from tests.invoicing.test_stripe_adapter import API, recorded

LISTED = ("customers", "payment_intents", "charges", "invoices", "refunds")
FETCHED = ("balance_transactions", "payment_methods")
MISSING = {"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such object"}}


@dataclass
class StripeAccount:
    rsps: responses.RequestsMock
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {r: {} for r in LISTED})
    payments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # invoice id → its payments
    down: bool = False  # every list answers 500
    broken: set[str] = field(default_factory=set)  # ids whose balance transaction Stripe refuses (400)
    unavailable: bool = False  # balance transactions and payment methods answer 503

    def __post_init__(self) -> None:
        for resource in LISTED:
            self.rsps.add_callback("GET", f"{API}/v1/{resource}", callback=self._list)
            self.rsps.add_callback(
                "GET", re.compile(rf"{re.escape(API)}/v1/{resource}/\w+(\?.*)?$"), callback=self._get
            )
        for resource in FETCHED:
            self.rsps.add_callback(
                "GET", re.compile(rf"{re.escape(API)}/v1/{resource}/\w+(\?.*)?$"), callback=self._beside
            )
        self.rsps.add_callback("GET", f"{API}/v1/invoice_payments", callback=self._payments)

    def add(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[resource][obj["id"]] = obj
        return obj

    def calls(self, path: str) -> list[Any]:
        return [c for c in self.rsps.calls if urlsplit(c.request.url).path == path]

    def _list(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.down:
            return 500, {}, json.dumps({"error": {"type": "api_error", "message": "Stripe is down"}})
        url = urlsplit(request.url)
        resource = url.path.rsplit("/", 1)[-1]
        since = int(parse_qs(url.query).get("created[gte]", ["0"])[0])
        data = [o for o in self.objects[resource].values() if o.get("created", 0) >= since]
        return 200, {}, json.dumps({"object": "list", "data": data, "has_more": False, "url": f"/v1/{resource}"})

    def _get(self, request: Any) -> tuple[int, dict[str, str], str]:
        _, _, resource, stripe_id = urlsplit(request.url).path.split("/")
        found = self.objects[resource].get(stripe_id)
        return (200, {}, json.dumps(found)) if found else (404, {}, json.dumps(MISSING))

    def _beside(self, request: Any) -> tuple[int, dict[str, str], str]:
        _, _, resource, stripe_id = urlsplit(request.url).path.split("/")
        if self.unavailable:
            return 503, {}, json.dumps({"error": {"type": "api_error", "message": "Stripe is having trouble"}})
        if stripe_id in self.broken:
            error = {"error": {"type": "invalid_request_error", "message": "This object cannot be read"}}
            return 400, {}, json.dumps(error)
        name = "balance_transaction" if resource == "balance_transactions" else "payment_method"
        return 200, {}, json.dumps(recorded(name, id=stripe_id))

    def _payments(self, request: Any) -> tuple[int, dict[str, str], str]:
        invoice = parse_qs(urlsplit(request.url).query).get("invoice", [""])[0]
        data = self.payments.get(invoice, [])
        return 200, {}, json.dumps({"object": "list", "data": data, "has_more": False, "url": "/v1/invoice_payments"})
