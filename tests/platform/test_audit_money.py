"""Every change of money state is audited with its actor: a staff member, a key, a task
(`task:<name>[<id>]`), a Stripe event (`stripe:evt_…`). Before, auditlog registered only
keys, subscriptions, grants and the catalog: a webhook's `invoice.paid` moved an invoice
to paid with no audit record at all, and tasks were only "the system user"."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry

from billing_project.audit import acting_as, api_actor_of, system_actor
from billing_project.money import Money
from invoicing.ledger import credit_grant
from invoicing.models import CreditEntry, Invoice
from plans.services import catalog_import, catalog_validate
from subscriptions.models import Subscription
from subscriptions.services import subscription_create, tenant_upsert
from tests.clock import NOW
from tests.plans.factories import demo

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def tenant(db, clock):
    catalog_import(spec=catalog_validate(demo()))
    return tenant_upsert(external_id="acme", name="Acme", currency="USD")[0]


def entries(obj):
    return list(LogEntry.objects.get_for_object(obj).order_by("timestamp", "pk"))


def test_invoices_credit_entries_and_credit_notes_are_registered():
    from auditlog.registry import auditlog

    from invoicing.models import CreditNote

    for model in (Invoice, CreditEntry, CreditNote):
        assert auditlog.contains(model), model


def test_a_credit_names_who_granted_it(tenant):
    with acting_as("staff:ana"):
        entry = credit_grant(tenant=tenant, amount=Money(Decimal("25.00"), "USD"), reason="goodwill", actor="staff:ana")
    (logged,) = entries(entry)
    assert logged.action == LogEntry.Action.CREATE
    assert api_actor_of(logged) == "staff:ana"
    assert logged.changes_dict["amount"][1] == "25.00"


def test_a_tasks_changes_name_the_task(tenant):
    from subscriptions.tasks import roll_due_subscriptions

    sub = subscription_create(tenant=tenant, plan_code="enterprise", actor="test", at=NOW - timedelta(days=400))
    result = roll_due_subscriptions.apply()
    assert result.successful(), result.traceback
    sub.refresh_from_db()
    assert sub.current_period_start > NOW - timedelta(days=40)
    rolled = [e for e in entries(sub) if e.action == LogEntry.Action.UPDATE]
    assert rolled
    assert {api_actor_of(e) for e in rolled} == {f"task:subscriptions.tasks.roll_due_subscriptions[{result.id}]"}
    assert all(e.actor is not None and e.actor.username == "billing-system" for e in rolled)


def test_a_nested_actor_gives_way_to_the_outer_one_when_it_ends(tenant):
    """auditlog's contexts overwrite one variable and never put the outer value back: after
    an inner one ended, the outer context's entries had no actor at all."""
    with acting_as("task:outer[1]"):
        with acting_as("stripe:evt_inner"):
            inner = credit_grant(tenant=tenant, amount=Money(Decimal(1), "USD"), reason="a", actor="x")
        outer = credit_grant(tenant=tenant, amount=Money(Decimal(2), "USD"), reason="b", actor="x")
        with system_actor():
            pass
        after_system = credit_grant(tenant=tenant, amount=Money(Decimal(3), "USD"), reason="c", actor="x")
    assert api_actor_of(entries(inner)[0]) == "stripe:evt_inner"
    assert api_actor_of(entries(outer)[0]) == "task:outer[1]"
    assert api_actor_of(entries(after_system)[0]) == "task:outer[1]"


def test_subscription_state_is_still_audited(tenant):
    with acting_as("task:t[1]"):
        sub = subscription_create(tenant=tenant, plan_code="pro", actor="test")
    assert Subscription.objects.filter(pk=sub.pk).exists()
    assert api_actor_of(entries(sub)[0]) == "task:t[1]"
