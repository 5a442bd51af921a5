"""What attacking the proposals route found, each kept fixed: input that crashed the dry run,
a plan change whose direction approval decided again, a limit that parallel proposals
overshot, and 404s that told a bound key which records exist."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from approvals.models import ApprovalRequest
from tests.subscriptions.test_races import race

URL = "/api/v1/proposals"


def body(kind: str, payload: object, key: str = "k") -> dict[str, object]:
    return {"kind": kind, "tenant": "acme", "payload": payload, "reason": "r", "idempotency_key": key}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("credit", {"amount": "10", "currency": 840}),
        ("credit", {"amount": "10", "currency": ["USD"]}),
        ("credit", {"amount": "1e30", "currency": "USD"}),
        ("credit", {"amount": "99999999999999999999.00", "currency": "USD"}),
        ("credit", {"amount": "５", "currency": "USD"}),
        ("credit", {"amount": "10", "currency": "USD", "expires_at": "9999-12-31T23:59:59-14:00"}),
        ("credit", {"amount": "10", "currency": "USD", "expires_at": "0001-01-01T00:00:00+14:00"}),
        ("grant", {"feature": "ai_tokens", "kind": "extra_limit", "amount": "1e25", "expires_at": "2030-01-01T00:00Z"}),
    ],
)
def test_input_that_crashed_the_dry_run_is_a_400(api, acme, agent_key, kind, payload):
    response = api.post(URL, body(kind, payload), format="json", **agent_key.header)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] in ("validation_error", "invalid_amount", "unknown_currency")
    assert not ApprovalRequest.objects.exists()


@pytest.mark.django_db
def test_a_plan_change_keeps_the_direction_the_approver_was_shown(api, acme, agent_key):
    from subscriptions.services import subscription_create

    subscription_create(tenant=acme, plan_code="team", actor="t")
    made = api.post(URL, body("plan_change", {"plan": "pro"}), format="json", **agent_key.header)
    assert made.status_code == 201, made.content
    proposal = ApprovalRequest.objects.get()
    assert proposal.payload == {"plan": "pro", "when": "period_end"}  # a downgrade: settled now, not at approval
    again = api.post(URL, body("plan_change", {"plan": "pro"}), format="json", **agent_key.header)
    assert (again.status_code, again.json()["id"]) == (200, proposal.pk)  # the same request, not a conflict


@pytest.mark.django_db
def test_another_tenants_proposal_and_a_missing_one_answer_alike(api, acme, agent_key, make_key):
    from subscriptions.services import tenant_upsert

    tenant_upsert(external_id="bolt", name="Bolt", currency="USD")
    theirs = api.post(URL, body("credit", {"amount": "1", "currency": "USD"}), format="json", **agent_key.header)
    bound = make_key("agent", tenant="bolt", name="bolt's agent")
    other = api.get(f"{URL}/{theirs.json()['id']}", **bound.header).json()
    missing = api.get(f"{URL}/999999", **bound.header).json()
    assert other == missing


@pytest.mark.django_db(transaction=True)
def test_proposals_sent_in_parallel_never_overshoot_the_keys_limit(acme, agent_key, settings):
    settings.PROPOSALS_PER_KEY_PER_HOUR = 4
    counter = iter(range(100))

    def propose() -> int:
        client = APIClient()
        n = next(counter)
        sent = body("credit", {"amount": "1", "currency": "USD"}, key=f"parallel-{n}")
        return client.post(URL, sent, format="json", **agent_key.header).status_code

    results, errors = race(propose, n=10)
    assert errors == []
    assert sorted(results) == [201] * 4 + [429] * 6
    assert ApprovalRequest.objects.count() == 4


@pytest.mark.django_db
def test_the_limit_says_when_to_come_back(api, acme, agent_key, settings):
    settings.PROPOSALS_PER_KEY_PER_HOUR = 1
    assert (
        api.post(
            URL, body("credit", {"amount": "1", "currency": "USD"}, "a"), format="json", **agent_key.header
        ).status_code
        == 201
    )
    refused = api.post(URL, body("credit", {"amount": "1", "currency": "USD"}, "b"), format="json", **agent_key.header)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 3500 <= int(refused["Retry-After"]) <= 3600
