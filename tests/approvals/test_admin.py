"""The approval queue in the admin: who asked, why (escaped), what approving would do; the
decisions are actions that ask for a reason, offered to finance-approver only."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.urls import reverse

from approvals.models import ApprovalRequest
from approvals.services import approval_approve, approval_request
from invoicing.models import CreditEntry
from tests.approvals.conftest import credit_request
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]
QUEUE = reverse("admin:approvals_approvalrequest_changelist")


def client_for(user) -> Client:
    client = Client()
    verified_login(client, user)
    return client


def decide(client: Client, action: str, request: ApprovalRequest, **extra: str):
    return client.post(QUEUE, {"action": action, ACTION_CHECKBOX_NAME: [request.pk], **extra})


def test_the_queue_shows_who_asked_why_and_what_approving_would_do(acme, ann, bob, agent_key):
    credit_request(acme, ann, "75000.00")
    approval_request(
        kind="credit",
        tenant=acme,
        payload={"amount": "12.5"},
        reason='<script>alert("x")</script> the agent says',
        requested_by_key=agent_key.key,
    )
    page = client_for(bob).get(QUEUE)
    assert page.status_code == 200
    html = page.content.decode()
    assert "75,000.00 USD" in html
    assert "12.50 USD" in html
    assert "staff:ann" in html
    assert f"agent key {agent_key.key}" in html
    assert "goodwill after the outage" in html
    assert "Grant 75,000.00 USD of credit to acme" in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert client_for(bob).get(QUEUE, {"status__exact": "approved"}).content.decode().count("staff:ann") == 0


def test_an_approver_approves_with_a_reason(acme, ann, bob):
    request = credit_request(acme, ann, "600.00")
    client = client_for(bob)
    asked = decide(client, "approve", request)  # first: the form asking why
    assert asked.status_code == 200
    assert b"Approve requests" in asked.content
    assert not CreditEntry.objects.exists()
    refused = decide(client, "approve", request, apply="1", reason="")
    assert refused.status_code == 200
    assert b"This field is required" in refused.content
    done = decide(client, "approve", request, apply="1", reason="checked the outage report")
    assert done.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_reason) == (
        "approved",
        bob,
        "checked the outage report",
    )
    assert CreditEntry.objects.get().actor == "staff:bob approving staff:ann"
    messages = [m.message for m in client.get(QUEUE).context["messages"]]
    assert messages == [f"#{request.pk} approved: {request.description}"]


def test_an_approver_rejects_and_the_requester_is_told_four_eyes(acme, ann, bob, cat):
    request = credit_request(acme, bob, "600.00")
    mine = client_for(bob)
    decide(mine, "approve", request, apply="1", reason="my own")
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"
    assert any("Four eyes" in m.message for m in mine.get(QUEUE).context["messages"])
    assert decide(client_for(cat), "reject", request, apply="1", reason="no outage that day").status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("rejected", cat)
    assert not CreditEntry.objects.exists()


def test_finance_auditors_and_support_are_not_offered_the_decisions(acme, ann, auditor, support):
    request = credit_request(acme, ann, "600.00")
    for user in (ann, auditor):
        client = client_for(user)
        page = client.get(QUEUE)
        assert page.status_code == 200  # they see the queue
        form = page.context["action_form"]  # None: no action at all
        actions = {name for name, _ in form.fields["action"].choices} if form is not None else set()
        assert actions.isdisjoint({"approve", "reject"}), (user, actions)
        for action in ("approve", "reject"):
            decide(client, action, request, apply="1", reason="let me")
    assert client_for(support).get(QUEUE).status_code == 403
    assert decide(client_for(support), "approve", request, apply="1", reason="let me").status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"
    assert not CreditEntry.objects.exists()


def test_the_queue_is_read_only(acme, ann, bob):
    request = credit_request(acme, ann, "600.00")
    client = client_for(bob)
    change = reverse("admin:approvals_approvalrequest_change", args=[request.pk])
    page = client.get(change)
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.post(change, {"status": "approved"}).status_code == 403
    assert client.get(reverse("admin:approvals_approvalrequest_add")).status_code == 403
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_the_requests_own_page_offers_approve_and_reject_to_an_approver_only(acme, ann, bob, auditor):
    request = credit_request(acme, ann)
    page_url = reverse("admin:approvals_approvalrequest_change", args=[request.pk])
    page = client_for(bob).get(page_url).content.decode()
    assert 'id="decide"' in page
    own_form = page.index('id="approvalrequest_form"')
    assert page.index("</form>", own_form) < page.index('id="decide"')  # not a form inside the page's form
    assert f'action="{QUEUE}"' in page
    assert 'value="approve"' in page
    assert 'value="reject"' in page
    # the button posts what the queue's action does: the reason form comes first
    client = client_for(bob)
    asked = client.post(QUEUE, {"action": "approve", ACTION_CHECKBOX_NAME: str(request.pk), "index": "0"})
    assert asked.status_code == 200
    assert b"reason" in asked.content
    request.refresh_from_db()
    assert request.status == "pending"
    assert 'id="decide"' not in client_for(ann).get(page_url).content.decode()  # finance asks, never decides
    assert 'id="decide"' not in client_for(auditor).get(page_url).content.decode()
    approval_approve(request_id=request.pk, approver=bob, reason="fine")
    assert 'id="decide"' not in client_for(bob).get(page_url).content.decode()  # decided: nothing left to do
