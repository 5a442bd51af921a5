"""Approval requests for the overview's pending figure (approvals.ApprovalRequest), made as
rows: what the overview counts is their status, expiry and amount, not how they came."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User

from approvals.models import ApprovalRequest
from tests.console.ledger import Ledger, T


def make_requests(ledger: Ledger) -> None:
    """Pending: 600.00 USD (expires in a week), 80,000 JPY (tomorrow), a trial extension (no
    amount); not counted: a pending one past its expiry (the sweeper has not run yet), an
    approved 900.00 USD, a rejected 50.00 EUR."""
    asker = User.objects.create_user("asker", is_staff=True)
    approver = User.objects.create_user("approver", is_staff=True)
    t = ledger.tenants
    rows: list[tuple[str, Any, str, str, str, timedelta]] = [
        ("credit", t["acme"], "600.00", "USD", "pending", timedelta(days=7)),
        ("refund", t["kyo"], "80000", "JPY", "pending", timedelta(days=1)),
        ("trial_extension", t["tria"], "", "", "pending", timedelta(days=7)),
        ("credit", t["bolt"], "700.00", "USD", "pending", -timedelta(hours=1)),
        ("credit", t["bolt"], "900.00", "USD", "approved", timedelta(days=7)),
        ("credit", t["euro"], "50.00", "EUR", "rejected", timedelta(days=7)),
    ]
    for kind, tenant, amount, currency, status, expires in rows:
        decided = status != "pending"
        ApprovalRequest.objects.create(
            kind=kind,
            tenant=tenant,
            payload={},
            amount=Decimal(amount) if amount else None,
            currency=currency,
            reason="asked",
            status=status,
            requested_by=asker,
            decided_by=approver if decided else None,
            decided_at=T if decided else None,
            decision_reason="checked" if decided else "",
            created_at=T - timedelta(days=1),
            expires_at=T + expires,
        )
