"""usage_record answers in domain terms: each event's outcome, and for a refused one the
domain error (errors.py) that says what kind of refusal it is. HTTP statuses are the
view's business (tests/usage/test_ingestion_api.py checks them)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from billing_project.api_keys import ApiPrincipal
from billing_project.errors import Conflict, Forbidden, InvalidRequest
from usage.ingestion import Outcome, usage_record

pytestmark = [pytest.mark.django_db]


def event(**overrides):
    return {"tenant": "acme", "metric": "ai_tokens", "quantity": "5", "idempotency_key": "k", **overrides}


def test_each_outcome_is_a_domain_result(make_key, usage_world):
    key = make_key("service", scopes=["usage:write"], metrics=["ai_tokens"])
    principal = ApiPrincipal.from_key(key.key)
    with time_machine.travel(datetime(2026, 11, 25, 12, tzinfo=UTC), tick=False):
        usage_record(principal=principal, events=[event(idempotency_key="first")])
        results = usage_record(
            principal=principal,
            events=[
                event(),
                event(idempotency_key="first"),
                event(idempotency_key="first", quantity="6"),
                event(metric="bananas"),
                event(metric="api_calls"),
            ],
        )
    assert [r.outcome for r in results] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.REJECTED,
        Outcome.REJECTED,
        Outcome.REJECTED,
    ]
    errors = [r.error for r in results]
    assert errors[:2] == [None, None]
    assert isinstance(errors[2], Conflict)
    assert errors[2].code == "idempotency_conflict"
    assert type(errors[3]) is InvalidRequest
    assert errors[3].code == "unknown_metric"
    assert isinstance(errors[4], Forbidden)
    assert errors[4].code == "metric_not_allowed"
    assert not any(hasattr(r, "http_status") for r in results)
