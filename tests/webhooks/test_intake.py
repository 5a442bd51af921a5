"""POST /webhooks/stripe/: only correctly signed, fresh events are stored, each once."""

from __future__ import annotations

import logging
import time

import pytest
from django.test import Client

from webhooks.models import StripeEvent
from webhooks.tasks import process_stripe_event

from .conftest import SECRET, URL, encode, handled, make_event, post, post_event, sign, stored

# The clock stands still (tests/clock.NOW): a signature 301 s ahead or behind stays outside
# the five minutes however long the test takes to reach the check.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]


def test_a_valid_event_is_stored_once_and_processed_once(counted, django_capture_on_commit_callbacks):
    event = make_event()
    with django_capture_on_commit_callbacks() as queued:
        response = post_event(event)
    assert response.status_code == 200
    assert response.json() == {"received": True, "event": event["id"], "status": "accepted"}
    row = StripeEvent.objects.get()
    assert (row.stripe_id, row.type, row.livemode, row.api_version) == (
        event["id"],
        "test.counted",
        False,
        event["api_version"],
    )
    assert row.payload == event
    assert int(row.created.timestamp()) == event["created"]
    assert row.processed_at is None
    assert len(queued) == 1  # processing is queued once the row commits

    process_stripe_event(event["id"])
    process_stripe_event(event["id"])  # a redelivered task

    row.refresh_from_db()
    assert row.processed_at is not None
    assert row.attempts == 1
    assert handled(event["id"]) == 1


def test_the_same_event_five_times_in_a_row_is_stored_and_handled_once(counted, django_capture_on_commit_callbacks):
    event = make_event()
    with django_capture_on_commit_callbacks() as queued:
        statuses = [post_event(event).json()["status"] for _ in range(5)]
    assert statuses == ["accepted"] + ["duplicate"] * 4
    assert stored() == 1
    assert len(queued) == 1
    for _ in range(5):
        process_stripe_event(event["id"])
    assert handled(event["id"]) == 1


def test_an_event_type_without_a_handler_is_stored_and_marked_processed(caplog, django_capture_on_commit_callbacks):
    event = make_event("customer.created")
    with django_capture_on_commit_callbacks():
        assert post_event(event).status_code == 200
    with caplog.at_level(logging.INFO, logger="webhooks.services"):
        process_stripe_event(event["id"])
    assert StripeEvent.objects.get().processed_at is not None
    assert any(r.message == "stripe.event.unhandled" for r in caplog.records)


def test_any_of_several_v1_signatures_may_match(django_capture_on_commit_callbacks):
    body = encode(make_event())
    good = sign(body)
    t, v1 = good.split(",")
    header = f"{t},v1={'0' * 64},{v1},v0=ignored"
    with django_capture_on_commit_callbacks():
        assert post(body, header).status_code == 200
    assert stored() == 1


@pytest.mark.parametrize("skew", [-290, 290])
def test_a_timestamp_within_five_minutes_either_way_is_accepted(skew, django_capture_on_commit_callbacks):
    body = encode(make_event())
    with django_capture_on_commit_callbacks():
        assert post(body, sign(body, timestamp=int(time.time()) + skew)).status_code == 200


def _tampered() -> tuple[bytes, str]:
    body = encode(make_event(amount_paid=100))
    return body.replace(b'"amount_paid":100', b'"amount_paid":1'), sign(body)


def _signed(secret: str = SECRET, skew: int = 0) -> tuple[bytes, str]:
    body = encode(make_event())
    return body, sign(body, secret=secret, timestamp=int(time.time()) + skew)


def _header(make) -> tuple[bytes, str]:
    body = encode(make_event())
    return body, make(body, sign(body))


REFUSED = {
    "tampered body": _tampered,
    "wrong secret": lambda: _signed(secret="whsec_" + "other" * 6),
    "stale timestamp": lambda: _signed(skew=-301),
    "future timestamp": lambda: _signed(skew=301),
    "no signature": lambda: (encode(make_event()), None),
    "empty signature": lambda: _header(lambda body, good: ""),
    "garbage header": lambda: _header(lambda body, good: "garbage"),
    "no timestamp": lambda: _header(lambda body, good: good.split(",")[1]),
    "non-numeric timestamp": lambda: _header(lambda body, good: "t=soon," + good.split(",")[1]),
    "two timestamps": lambda: _header(lambda body, good: f"{good},t=1"),
    "no v1": lambda: _header(lambda body, good: good.split(",")[0]),
    "v0 only": lambda: _header(lambda body, good: good.replace("v1=", "v0=")),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_unverified_posts_are_refused_and_nothing_is_stored(case):
    body, header = case()
    before = stored()
    response = post(body, header)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_signature"
    assert set(error) == {"code", "message", "details"}
    assert stored() == before == 0


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("signature", [None, "t=1,v1=00"])
def test_djstripes_secret_header_is_never_honoured(settings, debug, signature):
    # dj-stripe, under DEBUG, takes this header instead of a signature.
    settings.DEBUG = debug
    response = post(encode(make_event()), signature, HTTP_X_DJSTRIPE_WEBHOOK_SECRET=SECRET)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert stored() == 0


def test_an_empty_secret_refuses_everything(settings, caplog):
    settings.STRIPE_WEBHOOK_SECRET = ""
    body = encode(make_event())
    with caplog.at_level(logging.ERROR, logger="webhooks.views"):
        for header in (sign(body, secret=""), sign(body), None):
            response = post(body, header)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "webhook_not_configured"
    assert stored() == 0
    refusals = [r for r in caplog.records if r.name == "webhooks.views" and r.levelno == logging.ERROR]
    assert len(refusals) == 3


@pytest.mark.parametrize("body", [b"{not json", b'{"id": NaN}', b"\xff\xfe"], ids=["syntax", "nan", "not utf-8"])
def test_a_signed_body_that_is_not_json_is_refused(body):
    response = post(body, sign(body))
    assert response.status_code == 400
    # A body that is not UTF-8 cannot carry a Stripe signature at all.
    assert response.json()["error"]["code"] == ("invalid_signature" if body == b"\xff\xfe" else "malformed_json")
    assert stored() == 0


@pytest.mark.parametrize(
    "event",
    [
        [],
        {"type": "invoice.paid"},
        {**make_event(), "created": "yesterday"},
        {**make_event(), "livemode": "false"},
        {**make_event(), "data": {}},
        {**make_event(), "id": ""},
        {**make_event(), "type": "x" * 256},
        make_event(description="nul \u0000 here"),
    ],
    ids=["array", "no id", "created", "livemode", "no object", "empty id", "long type", "nul"],
)
def test_signed_json_that_is_not_a_stripe_event_is_refused(event):
    response = post_event(event)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_event"
    assert stored() == 0


def test_an_oversized_body_is_refused_before_anything_else(settings):
    body = encode(make_event(padding="x" * settings.STRIPE_WEBHOOK_MAX_BODY_BYTES))
    response = post(body, sign(body))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert stored() == 0


def test_only_post_is_allowed():
    response = Client().get(URL)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_the_endpoint_answers_without_its_trailing_slash_too():
    from django.test import Client

    event = make_event()
    body = encode(event)
    response = Client().post(
        "/webhooks/stripe", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(body)
    )
    assert response.status_code == 200  # not a redirect that would lose the signed body
    assert StripeEvent.objects.filter(stripe_id=event["id"]).exists()


@pytest.mark.django_db
def test_an_event_from_the_other_stripe_mode_is_refused(settings):
    settings.STRIPE_LIVE_MODE = False
    event = make_event()
    event["livemode"] = True
    response = post_event(event)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_event")
    assert stored() == 0
