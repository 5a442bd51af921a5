"""A draft edited while it is being published: the edit either lands before publish
validates and hashes the terms, or is refused — never slipped in after (a race test
on real PostgreSQL, two connections)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from plans.models import ChargeTier, PlanVersion
from plans.selectors import plan_spec_from_version
from plans.services import catalog_import, catalog_validate, plan_version_copy_to_draft, plan_version_publish
from tests.plans.factories import small

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_publish_waits_for_an_edit_in_flight_and_hashes_what_was_committed():
    catalog_import(spec=catalog_validate(small()))
    draft = plan_version_copy_to_draft(version=PlanVersion.objects.get(plan__code="pro", status="published"))
    tier = ChargeTier.objects.filter(charge__version=draft, up_to__isnull=True).get()
    edited, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def edit_tier() -> None:
        try:
            with transaction.atomic():
                ChargeTier.objects.filter(pk=tier.pk).update(unit_price="0.00003")
                edited.set()
                release.wait(10)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    editor = threading.Thread(target=edit_tier)
    editor.start()
    assert edited.wait(10)
    publisher_done = threading.Event()
    published: list[PlanVersion] = []

    def publish() -> None:
        try:
            published.append(plan_version_publish(version=draft))
        except BaseException as exc:
            errors.append(exc)
        finally:
            publisher_done.set()
            connection.close()

    publisher = threading.Thread(target=publish)
    publisher.start()
    # publish must be waiting for the edit's transaction, not racing past it
    assert not publisher_done.wait(1.0)
    release.set()
    editor.join(10)
    publisher.join(10)
    assert errors == []
    version = PlanVersion.objects.get(pk=published[0].pk)
    assert version.status == "published"
    # the stored hash describes the terms as committed, edit included
    assert plan_spec_from_version(version).content_hash() == version.content_hash
    assert str(ChargeTier.objects.get(pk=tier.pk).unit_price) == "0.0000300000"
