"""A hand-off to a broker that hangs neither hangs nor fails the request that made it.

Attacked with a Redis that accepted connections and never answered: a Stripe webhook took
30 s (the send had no timeout) and then answered 500, so Stripe would deliver it again
and again. What the task is for is committed before the send; a send that cannot be made
gives up within seconds, is logged, and the sweeper queues the work again. So the webhook
answers 200 once the event is stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.faults.proxy import FaultProxy
from tests.webhooks.conftest import SECRET, URL, encode, make_event, sign
from webhooks.models import StripeEvent

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def hung_broker(settings: Any) -> Iterator[FaultProxy]:
    """The Celery app's broker behind a proxy; its connection pools made anew for it."""
    from billing_project.celery import app as celery_app

    app: Any = celery_app  # its pools are private attributes, made anew here for the proxy
    proxy = FaultProxy(settings.REDIS_URL)
    saved = app.conf.broker_url, app._pool, app.amqp._producer_pool
    app.conf["broker_url"] = proxy.url
    app._pool, app.amqp._producer_pool = None, None
    try:
        yield proxy
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf["broker_url"], app._pool, app.amqp._producer_pool = saved
        proxy.close()


def test_a_webhook_is_200_once_stored_while_the_broker_hangs(settings, hung_broker, django_capture_on_commit_callbacks):
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    event = make_event()
    body = encode(event)
    with hung_broker.fault("hang"), django_capture_on_commit_callbacks(execute=True):
        started = time.monotonic()
        response = Client(raise_request_exception=False).post(
            URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body)
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    stored = StripeEvent.objects.get(stripe_id=event["id"])
    assert stored.processed_at is None  # not processed: the sweeper queues it (process_pending_stripe_events)
    # the send gave up on its socket timeout and publish retries, not on the 30 s a hang lasted
    bound = 3 * settings.REDIS_SOCKET_TIMEOUT + 5
    assert elapsed < bound, elapsed
