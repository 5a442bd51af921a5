"""A published plan version cannot be edited or deleted by anything: ORM, raw SQL, admin."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from plans.models import Charge, ChargeTier, PlanEntitlement, PlanVersion
from plans.services import catalog_import, catalog_validate, plan_version_archive, plan_version_copy_to_draft
from tests.plans.factories import small

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def published() -> PlanVersion:
    catalog_import(spec=catalog_validate(small()))
    return PlanVersion.objects.get(plan__code="pro", status="published")


def refused(action) -> None:
    with pytest.raises(DatabaseError, match="immutable|cannot be deleted"), transaction.atomic():
        action()


def test_version_fields_cannot_change(published):
    refused(lambda: PlanVersion.objects.filter(pk=published.pk).update(base_fee=1))
    published.trial_days = 0
    refused(lambda: published.save())


def test_raw_sql_cannot_change_it_either(published):
    def raw():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE plans_planversion SET base_fee = 0 WHERE id = %s", [published.pk])

    refused(raw)


def test_version_cannot_be_deleted_or_reopened(published):
    refused(lambda: PlanVersion.objects.filter(pk=published.pk).delete())
    refused(lambda: PlanVersion.objects.filter(pk=published.pk).update(status="draft"))


def test_charges_tiers_and_entitlements_are_frozen(published):
    charge = published.charges.get(model="graduated")
    tier = charge.tiers.first()
    entitlement = published.entitlements.first()
    refused(lambda: Charge.objects.filter(pk=charge.pk).update(model="volume"))
    refused(lambda: ChargeTier.objects.filter(pk=tier.pk).update(unit_price=9))
    refused(lambda: ChargeTier.objects.create(charge=charge, position=9, up_to=None, unit_price=1))
    refused(lambda: PlanEntitlement.objects.filter(pk=entitlement.pk).update(limit=1))
    refused(lambda: PlanEntitlement.objects.filter(pk=entitlement.pk).delete())
    refused(
        lambda: Charge.objects.create(
            version=published, metric=charge.metric, model="per_unit", unit_price=1, position=5
        )
    )


def test_archiving_is_the_one_change_allowed(published):
    plan_version_archive(version=published)
    published.refresh_from_db()
    assert published.status == "archived"
    assert published.archived_at is not None
    refused(lambda: PlanVersion.objects.filter(pk=published.pk).update(status="published"))


def test_a_draft_is_freely_editable_until_published(published):
    draft = plan_version_copy_to_draft(version=published)
    assert draft.status == "draft"
    assert draft.version is None
    PlanVersion.objects.filter(pk=draft.pk).update(base_fee=99)
    draft.charges.get(model="graduated").tiers.update(unit_price=1)
    draft.entitlements.all().delete()
    draft.delete()


def test_the_version_row_itself_refuses_delete(published):
    # Raw SQL reaches the version row before any child (the ORM would delete children first).
    def raw():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM plans_planversion WHERE id = %s", [published.pk])

    with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic():
        raw()


@pytest.mark.parametrize("table", ["plans_planversion", "plans_charge", "plans_chargetier", "plans_planentitlement"])
def test_truncate_is_refused_to_a_normal_session(table):
    # (no rows written in this test: TRUNCATE would wait for our own transaction's locks)
    import psycopg

    params = connection.get_connection_params()
    for key in ("options", "cursor_factory", "context"):
        params.pop(key, None)
    with psycopg.connect(**params, autocommit=True) as raw:
        raw.execute("SET lock_timeout = '5s'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="TRUNCATE refused"):
            raw.execute(f"TRUNCATE {table} CASCADE")


def test_publishing_refuses_values_a_charge_model_ignores(published):
    from plans.catalog import CatalogError
    from plans.services import plan_version_publish

    draft = plan_version_copy_to_draft(version=published)
    draft.charges.filter(model="graduated").update(unit_price=5)  # a per-unit price on a tiered charge
    with pytest.raises(CatalogError, match="unit_price: does not apply to the graduated model"):
        plan_version_publish(version=draft)
