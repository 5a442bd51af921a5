"""POST/GET /api/v1/proposals (API.md): an agent key proposes, a person decides. A proposal
changes nothing by itself, is checked now by the service approval will run, and is seen
only by the key that made it (a tenant-bound key: that tenant's only)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.services import approval_approve
from invoicing.models import CreditEntry, Refund
from tests.clock import NOW
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]
URL = "/api/v1/proposals"


def credit(**over):
    body = {
        "kind": "credit",
        "tenant": "acme",
        "payload": {"amount": "25.00", "currency": "USD"},
        "reason": "The outage of 28 November cost them a day.",
        "idempotency_key": "agent-credit-1",
    }
    return {**body, **over}


def test_an_agent_key_posts_a_credit_proposal_and_gets_201_pending(api, acme, agent_key):
    response = api.post(URL, credit(), format="json", **agent_key.header)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert (body["kind"], body["tenant"]) == ("credit", "acme")
    assert body["payload"] == {"amount": "25", "currency": "USD"}  # as checked: the amount normalized
    assert body["reason"] == "The outage of 28 November cost them a day."
    assert {"id", "created_at", "expires_at", "description"} <= set(body)
    assert "25.00 USD" in body["description"]
    assert not CreditEntry.objects.exists()  # nothing happened
    proposal = ApprovalRequest.objects.get(pk=body["id"])
    assert proposal.requested_by_key == agent_key.key
    assert proposal.requested_by is None


def test_the_same_idempotency_key_answers_the_first_and_other_terms_conflict(api, acme, agent_key):
    first = api.post(URL, credit(), format="json", **agent_key.header)
    again = api.post(URL, credit(), format="json", **agent_key.header)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = api.post(URL, credit(payload={"amount": "26.00", "currency": "USD"}), format="json", **agent_key.header)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert ApprovalRequest.objects.count() == 1


def test_a_proposal_that_could_never_be_approved_is_400_with_the_services_code(api, acme, agent_key, invoice):
    cases = [
        (credit(payload={"amount": "-5", "currency": "USD"}), "invalid_amount"),
        (credit(kind="refund", payload={"invoice": invoice.number, "amount": "1000.01"}), "refund_exceeds_paid"),
        (credit(kind="refund", payload={"invoice": "INV-1999-000001", "amount": "1"}), None),
        (credit(kind="trial_extension", payload={"days": 7}), None),  # acme is not in a trial
        (credit(tenant="nobody"), "unknown_tenant"),
        (credit(kind="pay_invoice"), "validation_error"),
        (credit(payload="25 USD"), "validation_error"),
        (credit(reason=""), "validation_error"),
    ]
    for n, (body, code) in enumerate(cases):
        response = api.post(URL, {**body, "idempotency_key": f"never-{n}"}, format="json", **agent_key.header)
        assert response.status_code == 400, (body, response.content)
        if code:
            assert response.json()["error"]["code"] == code, (body, response.json())
    assert not ApprovalRequest.objects.exists()
    assert not Refund.objects.exists()


def test_a_finance_approver_approves_and_the_credit_names_the_key_and_the_approver(api, acme, agent_key, bob):
    proposal_id = api.post(URL, credit(), format="json", **agent_key.header).json()["id"]
    approval_approve(request_id=proposal_id, approver=bob, reason="checked the incident log")
    entry = CreditEntry.objects.get(tenant=acme)
    assert entry.amount == Decimal("25.00")
    assert entry.actor == f"staff:bob approving agent:{agent_key.key.prefix}"
    followed = api.get(f"{URL}/{proposal_id}", **agent_key.header).json()
    assert (followed["status"], followed["decision_reason"]) == ("approved", "checked the incident log")
    assert followed["decided_by"] == "staff:bob"
    assert followed["result"] == {"credit_entry": entry.pk}  # what approving did


def test_an_agent_follows_only_its_own_proposals_and_a_bound_key_only_its_tenant(api, acme, agent_key, make_key):
    from subscriptions.services import tenant_upsert

    tenant_upsert(external_id="bolt", name="Bolt", currency="USD")
    mine = api.post(URL, credit(), format="json", **agent_key.header).json()
    other_agent = make_key("agent", name="another agent")
    theirs = api.post(URL, credit(idempotency_key="x"), format="json", **other_agent.header).json()
    listed = api.get(URL, **agent_key.header).json()["proposals"]
    assert [p["id"] for p in listed] == [mine["id"]]
    assert api.get(f"{URL}/{theirs['id']}", **agent_key.header).status_code == 404

    bound = make_key("agent", tenant="bolt", name="bolt's agent")
    assert api.post(URL, credit(idempotency_key="b"), format="json", **bound.header).status_code == 404  # acme
    own = api.post(URL, credit(tenant="bolt", idempotency_key="b"), format="json", **bound.header)
    assert own.status_code == 201
    assert api.get(URL, {"tenant": "acme"}, **bound.header).status_code == 404
    assert [p["tenant"] for p in api.get(URL, **bound.header).json()["proposals"]] == ["bolt"]
    assert api.get(f"{URL}/{mine['id']}", **bound.header).status_code == 404


def test_status_filter_and_a_proposal_past_its_expiry_reads_expired(api, acme, agent_key, clock):
    made = api.post(URL, credit(), format="json", **agent_key.header).json()
    assert [p["id"] for p in api.get(URL, {"status": "pending"}, **agent_key.header).json()["proposals"]] == [
        made["id"]
    ]
    clock.move_to(NOW + timedelta(days=8))  # APPROVAL_EXPIRY_DAYS = 7
    assert api.get(f"{URL}/{made['id']}", **agent_key.header).json()["status"] == "expired"
    assert api.get(URL, {"status": "pending"}, **agent_key.header).json()["proposals"] == []
    assert len(api.get(URL, {"status": "expired"}, **agent_key.header).json()["proposals"]) == 1
    assert api.get(URL, {"status": "bogus"}, **agent_key.header).status_code == 400
    assert api.get(URL + "?status=", **agent_key.header).status_code == 400  # empty is no status, not "any"


def test_a_key_without_the_scope_cannot_propose(api, acme, make_key):
    reader = make_key("agent", scopes=["billing:read"])
    response = api.post(URL, credit(), format="json", **reader.header)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"
    assert api.post(URL, credit(), format="json").status_code == 401


def test_an_oversized_payload_is_413_and_a_long_reason_400(api, acme, agent_key):
    huge = credit(payload={"amount": "1", "currency": "USD", "note": "x" * 20_000})
    response = api.post(URL, huge, format="json", **agent_key.header)
    assert response.status_code == 413
    too_long = api.post(URL, credit(reason="r" * 2001), format="json", **agent_key.header)
    assert too_long.status_code == 400
    assert not ApprovalRequest.objects.exists()


def test_a_flood_of_proposals_is_rate_limited_per_key(api, acme, agent_key, make_key, settings):
    settings.PROPOSALS_PER_KEY_PER_HOUR = 3
    codes = [
        api.post(URL, credit(idempotency_key=f"flood-{n}"), format="json", **agent_key.header).status_code
        for n in range(5)
    ]
    assert codes == [201, 201, 201, 429, 429]
    flooded = api.post(URL, credit(idempotency_key="flood-9"), format="json", **agent_key.header)
    assert flooded.json()["error"]["code"] == "rate_limited"
    assert api.post(URL, credit(idempotency_key="flood-0"), format="json", **agent_key.header).status_code == 200
    other = make_key("agent", name="a quieter agent")  # per key: another is not held back
    assert api.post(URL, credit(idempotency_key="q"), format="json", **other.header).status_code == 201
    assert ApprovalRequest.objects.count() == 4


def test_html_in_a_proposal_is_shown_escaped_to_the_approver(api, acme, agent_key, bob):
    script = "<script>alert('x')</script>"
    body = credit(reason=f"please {script}", payload={"amount": "25.00", "currency": "USD"})
    proposal_id = api.post(URL, body, format="json", **agent_key.header).json()["id"]
    client = Client()
    verified_login(client, bob)
    for url in (
        reverse("admin:approvals_approvalrequest_changelist"),
        reverse("admin:approvals_approvalrequest_change", args=[proposal_id]),
    ):
        html = client.get(url).content.decode()
        assert script not in html, url
        assert "&lt;script&gt;" in html, url


def test_an_agent_cannot_approve_not_even_with_a_staff_session_replayed_on_the_api(api, acme, agent_key, bob):
    proposal_id = api.post(URL, credit(), format="json", **agent_key.header).json()["id"]
    staff = Client()
    verified_login(staff, bob)
    session = staff.cookies  # the approver's own session cookie, replayed by the agent
    replayed = Client()
    replayed.cookies = session
    for path in (f"{URL}/{proposal_id}/approve", f"{URL}/{proposal_id}"):
        for authorization in ("", agent_key.header["HTTP_AUTHORIZATION"]):
            extra: dict[str, str] = {"Authorization": authorization} if authorization else {}
            answer = replayed.post(path, "{}", content_type="application/json", headers=extra)
            assert answer.status_code in (401, 403, 404, 405), (path, answer.status_code)
    # the API takes no session: with the cookie alone it asks for a key
    assert replayed.get(URL).status_code == 401
    assert ApprovalRequest.objects.get(pk=proposal_id).status == "pending"
    assert not CreditEntry.objects.exists()
