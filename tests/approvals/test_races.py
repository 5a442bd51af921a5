"""Raced for real: each test holds, in a session of its own, the lock the guard takes until
every racer is queued behind it (PostgreSQL's lock manager says so), then lets them go at
once. Without the guard they would all read a pending request, or no request."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections

from approvals.models import ApprovalRequest
from approvals.services import approval_approve
from billing_project.errors import Conflict
from invoicing.models import CreditEntry
from tests.approvals.conftest import credit_request, staff_member
from tests.locks import backend_pid, raw_connection, waiting_behind
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

RACERS = 6


def released_together(table: str, pk: int, action: Callable[[int], Any]) -> list[Any]:
    """`action(i)` in RACERS threads, all queued behind a lock on row `pk` of `table` that is
    held here until every one of them waits for it; what each returned or raised."""

    def run(i: int) -> Any:
        try:
            return action(i)
        except Exception as exc:  # collected for the assertions
            return exc
        finally:
            connections.close_all()

    holder = raw_connection()
    try:
        holder.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [pk])  # noqa: S608
        with ThreadPoolExecutor(RACERS) as pool:
            futures = [pool.submit(run, i) for i in range(RACERS)]
            assert wait_for(lambda: waiting_behind(backend_pid(holder)) == RACERS), "the racers never met"
            holder.rollback()
            return [f.result(timeout=60) for f in futures]
    finally:
        holder.close()


def test_approvers_racing_execute_the_request_once(acme, ann):
    approvers = [staff_member(f"approver-{i}", "finance-approver") for i in range(RACERS)]
    request = credit_request(acme, ann, "600.00")

    results = released_together(
        "approvals_approvalrequest",
        request.pk,
        lambda i: approval_approve(request_id=request.pk, approver=approvers[i], reason="looks right"),
    )

    approved = [r for r in results if isinstance(r, ApprovalRequest)]
    refused = [r for r in results if not isinstance(r, ApprovalRequest)]
    assert len(approved) == 1, results
    assert all(isinstance(e, Conflict) and e.code == "approval_not_pending" for e in refused), refused
    assert CreditEntry.objects.count() == 1
    request.refresh_from_db()
    assert (request.status, request.decided_by) == ("approved", approved[0].decided_by)


def test_the_same_request_sent_concurrently_is_made_once(acme, ann):
    # every racer waits for the tenant's lock; released, they go one at a time: the first
    # makes the request, the others find it (an earlier version locked only in the dry run
    # and deadlocked once in CI under two workers)
    results = released_together(
        "subscriptions_tenant", acme.pk, lambda _: credit_request(acme, ann, "600.00", idempotency_key="form-1")
    )
    assert all(isinstance(r, ApprovalRequest) for r in results), results
    assert {r.pk for r in results} == {ApprovalRequest.objects.get().pk}
    assert not CreditEntry.objects.exists()
