"""Stripe webhook fixtures: events signed exactly as Stripe signs them, and a counting
handler registered in the real registry (and removed afterwards)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from billing_project.redis_client import get_redis, rkey
from webhooks.handlers import HANDLERS, handles
from webhooks.models import StripeEvent

SECRET = "whsec_" + "test" * 8
URL = "/webhooks/stripe/"


@pytest.fixture(autouse=True)
def webhook_secret(settings: Any) -> str:
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    return SECRET


def make_event(event_type: str = "test.counted", stripe_id: str | None = None, **obj: Any) -> dict[str, Any]:
    return {
        "id": stripe_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "api_version": "2026-05-27.dahlia",
        "created": int(time.time()) - 5,
        "livemode": False,
        "pending_webhooks": 1,
        "type": event_type,
        "data": {"object": {"id": f"in_{uuid.uuid4().hex[:14]}", "object": "invoice", **obj}},
    }


def encode(event: Any) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme: v1 = HMAC-SHA256(secret, "<t>.<body>"), hex."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post(body: bytes, signature: str | None, client: Client | None = None, **headers: Any) -> Any:
    # CSRF checks on, as for any browser-less caller: the endpoint must not need a token.
    client = client or Client(enforce_csrf_checks=True)
    if signature is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    return client.post(URL, data=body, content_type="application/json", **headers)


def post_event(event: dict[str, Any], client: Client | None = None) -> Any:
    body = encode(event)
    return post(body, sign(body), client=client)


def stored() -> int:
    return StripeEvent.objects.count()


def handled(stripe_id: str) -> int:
    """How many times the counting handler ran for this event (Redis: not rolled back)."""
    return int(get_redis().get(rkey("test-counted", stripe_id)) or 0)


@pytest.fixture
def registry() -> Iterator[dict[str, Any]]:
    """The real handler registry; test handlers registered in it are removed afterwards."""
    before = dict(HANDLERS)
    yield HANDLERS
    HANDLERS.clear()
    HANDLERS.update(before)


@pytest.fixture
def counted(registry: dict[str, Any]) -> None:
    @handles("test.counted")
    def count(event: StripeEvent) -> Callable[[], int]:
        return lambda: get_redis().incr(rkey("test-counted", event.stripe_id))
