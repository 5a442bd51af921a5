"""Finance staff in the admin: draft, publish and view versions; published versions refuse edits;
every change is audited with the staff member."""

from __future__ import annotations

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from plans.models import Plan, PlanEntitlement, PlanVersion
from plans.services import catalog_import, catalog_validate
from tests.conftest import verified_login
from tests.plans.factories import small

pytestmark = [pytest.mark.django_db]

INLINES = {
    f"{prefix}-{k}": v
    for prefix in ("charges", "entitlements")
    for k, v in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"), ("MIN_NUM_FORMS", "0"), ("MAX_NUM_FORMS", "1000"))
}


@pytest.fixture
def finance_user():
    user = get_user_model().objects.create_user("fin", "fin@example.com", "pw-long-enough-1", is_staff=True)
    user.groups.add(Group.objects.get(name="finance"))
    return user


@pytest.fixture
def finance(finance_user) -> Client:
    client = Client()
    verified_login(client, finance_user)
    return client


@pytest.fixture
def published() -> PlanVersion:
    catalog_import(spec=catalog_validate(small()))
    return PlanVersion.objects.get(plan__code="pro", status="published")


def act(client: Client, action: str, *versions: PlanVersion):
    return client.post(
        "/admin/plans/planversion/", {"action": action, "_selected_action": [v.pk for v in versions]}, follow=True
    )


def test_finance_drafts_and_publishes_a_new_plan(finance, finance_user):
    plan = Plan.objects.create(code="starter", name="Starter")
    response = finance.post(
        "/admin/plans/planversion/add/",
        {"plan": plan.pk, "interval": "month", "currency": "USD", "base_fee": "9.00", "trial_days": "7", **INLINES},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    draft = PlanVersion.objects.get(plan=plan)
    assert (draft.status, draft.version) == ("draft", None)
    response = act(finance, "publish", draft)
    assert "published" in response.content.decode()
    draft.refresh_from_db()
    assert (draft.status, draft.version) == ("published", 1)
    entry = LogEntry.objects.get_for_object(draft).filter(action=LogEntry.Action.CREATE).get()
    assert entry.actor == finance_user


def test_finance_sees_the_versions_of_a_plan(finance, published):
    assert finance.get("/admin/plans/planversion/").status_code == 200
    page = finance.get(f"/admin/plans/plan/{published.plan_id}/change/")
    assert page.status_code == 200
    assert "pro v1" in page.content.decode()


def test_a_published_version_is_read_only_in_the_admin(finance, published):
    page = finance.get(f"/admin/plans/planversion/{published.pk}/change/").content.decode()
    assert 'name="base_fee"' not in page  # shown, not editable
    # a complete, otherwise valid form that tries to change every field
    full = {
        "plan": published.plan_id,
        "interval": "year",
        "currency": "EUR",
        "base_fee": "1.00",
        "trial_days": "0",
        **INLINES,
    }
    response = finance.post(f"/admin/plans/planversion/{published.pk}/change/", full)
    assert response.status_code in (302, 403)
    published.refresh_from_db()
    assert str(published.base_fee) == "49.0000000000"
    charge = published.charges.first()
    assert finance.post(f"/admin/plans/charge/{charge.pk}/change/", {"model": "per_unit"}).status_code == 403
    assert finance.get(f"/admin/plans/planversion/{published.pk}/delete/").status_code == 403


def test_copy_to_draft_then_publish_archives_the_previous_version(finance, published):
    act(finance, "copy_to_draft", published)
    draft = PlanVersion.objects.get(plan=published.plan, status="draft")
    assert draft.charges.count() == 2
    page = finance.get(f"/admin/plans/planversion/{draft.pk}/change/").content.decode()
    assert 'name="base_fee"' in page  # a draft is editable
    PlanVersion.objects.filter(pk=draft.pk).update(base_fee="59.00")
    act(finance, "publish", draft)
    published.refresh_from_db()
    draft.refresh_from_db()
    assert (published.status, draft.status, draft.version) == ("archived", "published", 2)


def test_publishing_an_invalid_draft_is_refused_with_the_problem(finance, published):
    act(finance, "copy_to_draft", published)
    draft = PlanVersion.objects.get(plan=published.plan, status="draft")
    draft.charges.filter(metric__code="api_calls").delete()  # api has overage: bill
    response = act(finance, "publish", draft)
    assert "&#x27;bill&#x27; needs a charge on metric &#x27;api_calls&#x27;" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"


@pytest.mark.parametrize("group", ["support", "auditor"])
def test_only_finance_can_publish(published, group):
    from plans.services import plan_version_copy_to_draft

    draft = plan_version_copy_to_draft(version=published)
    user = get_user_model().objects.create_user(group, f"{group}@example.com", "pw-long-enough-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    verified_login(client, user)
    act(client, "publish", draft)
    act(client, "copy_to_draft", published)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert PlanVersion.objects.filter(status="draft").count() == 1
    assert PlanEntitlement.objects.filter(version=published).count() == 3


def test_a_drafts_currency_is_stored_upper_case(finance):
    plan = Plan.objects.create(code="eu", name="EU")
    finance.post(
        "/admin/plans/planversion/add/",
        {"plan": plan.pk, "interval": "month", "currency": "eur", "base_fee": "9.00", "trial_days": "0", **INLINES},
    )
    assert PlanVersion.objects.get(plan=plan).currency == "EUR"
