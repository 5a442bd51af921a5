"""Four eyes: a tenant, staff in their groups (as the migration and staff.py make them), a
paid invoice to correct or refund, and an agent's key."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from approvals.models import ApprovalRequest
from approvals.services import approval_request
from billing_project.staff import AUDITOR, FINANCE, FINANCE_APPROVER, SUPPORT
from invoicing.models import Invoice
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Tenant
from subscriptions.services import tenant_upsert
from tests.invoicing.stripe_refunds import paid_at_stripe
from tests.plans.factories import demo


def staff_member(username: str, *groups: str) -> User:
    user = User.objects.create_user(username, password="x" * 16, is_staff=True)
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return User.objects.get(pk=user.pk)  # fresh: no permission cache


@pytest.fixture
def acme(db: None, clock: Any) -> Tenant:
    # on the suite's frozen clock: expiry, trials and numbers are computed from NOW
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


@pytest.fixture
def ann(db: None) -> User:
    """Finance: asks for what is above the threshold."""
    return staff_member("ann", FINANCE)


@pytest.fixture
def bob(db: None) -> User:
    """An approver."""
    return staff_member("bob", FINANCE_APPROVER)


@pytest.fixture
def cat(db: None) -> User:
    """Another approver."""
    return staff_member("cat", FINANCE_APPROVER)


@pytest.fixture
def auditor(db: None) -> User:
    return staff_member("audrey", AUDITOR)


@pytest.fixture
def support(db: None) -> User:
    return staff_member("sam", SUPPORT)


@pytest.fixture
def invoice(acme: Tenant) -> Invoice:
    """INV-…: 1,000.00 USD paid through Stripe (lines 600.00 and 400.00)."""
    return paid_at_stripe(acme, amounts=("600.00", "400.00"))


def credit_request(tenant: Tenant, user: User, amount: str = "600.00", **kw: Any) -> ApprovalRequest:
    return approval_request(
        kind="credit",
        tenant=tenant,
        payload={"amount": amount, "currency": "USD"},
        reason="goodwill after the outage",
        requested_by=user,
        **kw,
    )
