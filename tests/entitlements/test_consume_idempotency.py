"""POST /api/v1/entitlements/consume: an idempotency key names one request. Sent again with
the same feature and quantity it answers as the first time did; with another feature or
quantity it is 409 `idempotency_conflict`, as usage events are, and records nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from entitlements.models import ConsumeRecord
from usage.models import UsageEvent

# `subscribed` freezes the suite's clock inside its first period (tests/clock.py)
pytestmark = [pytest.mark.django_db]
URL = "/api/v1/entitlements/consume"


def consume(api, reader, key, feature="tokens", quantity="10"):
    body = {"tenant": "acme", "feature": feature, "quantity": quantity, "idempotency_key": key}
    return api.post(URL, body, format="json", **reader.header)


def test_the_same_key_and_payload_answer_as_the_first_time(api, reader, subscribed):
    first = consume(api, reader, "k1")
    assert first.status_code == 201, first.content
    again = consume(api, reader, "k1", quantity="10.000")  # the same number
    assert (again.status_code, again.json()) == (201, first.json())
    assert UsageEvent.objects.count() == 1


@pytest.mark.parametrize(("feature", "quantity"), [("tokens", "11"), ("api", "1")])
def test_the_same_key_with_another_payload_is_409_and_records_nothing(api, reader, subscribed, feature, quantity):
    first = consume(api, reader, "k1")
    assert first.status_code == 201
    response = consume(api, reader, "k1", feature=feature, quantity=quantity)
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert error["details"] == {"idempotency_key": "k1", "feature": "tokens", "quantity": "10"}
    assert UsageEvent.objects.count() == 1
    assert ConsumeRecord.objects.count() == 1
    # and the first payload still answers as it did
    assert consume(api, reader, "k1").json() == first.json()


def test_a_denied_consume_is_a_request_too(api, reader, subscribed):
    denied = consume(api, reader, "big", feature="api", quantity="6")  # the limit is 5
    assert (denied.status_code, denied.json()["allowed"]) == (200, False)
    assert consume(api, reader, "big", feature="api", quantity="1").status_code == 409
    assert consume(api, reader, "big", feature="api", quantity="6").json() == denied.json()
    assert not UsageEvent.objects.exists()


def test_a_quantity_finer_than_usage_takes_is_400(api, reader, subscribed):
    # usage quantities have at most 6 decimals: refused up front, not half-recorded
    response = consume(api, reader, "fine", quantity="0.0000001")
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_quantity")
    assert not ConsumeRecord.objects.exists()


def test_the_service_answers_a_domain_result(reader, subscribed):
    from billing_project.api_keys import ApiPrincipal
    from entitlements.services import Consumed, entitlement_consume

    principal = ApiPrincipal.from_key(reader.key)

    def run(key, quantity):
        return entitlement_consume(
            principal=principal, tenant="acme", feature="api", quantity=Decimal(quantity), idempotency_key=key
        )

    recorded = run("a", "1")
    assert isinstance(recorded, Consumed)
    assert (recorded.recorded, recorded.answer["allowed"]) == (True, True)
    denied = run("b", "9")
    assert (denied.recorded, denied.answer["allowed"]) == (False, False)
    assert run("a", "1") == recorded  # a repeat answers as the first time did
