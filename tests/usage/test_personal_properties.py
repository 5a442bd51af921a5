"""Personal usage properties (issue 16, data minimisation): a metric's `personal` keys are
stored, counted and deduplicated as keyed pseudonyms only. Unique counts still count people,
retries are still duplicates, another tenant's same value is another pseudonym, and the
value itself is nowhere: not in the events, not in the rollups, not in Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from billing_project.redis_client import get_redis
from plans.catalog import CatalogError, catalog_document
from plans.models import BillableMetric
from plans.services import catalog_import, catalog_validate
from subscriptions.services import subscription_create, tenant_upsert
from tests.clock import NOW
from tests.plans.factories import demo
from usage.aggregation import usage_aggregate
from usage.models import UsageEvent
from usage.pseudonyms import pseudonym
from usage.selectors import usage_over

pytestmark = pytest.mark.django_db

URL = "/api/v1/usage/events"
PEOPLE = ["ann@example.test", "bob@example.test", "ann@example.test", 42, "42"]  # ann twice; 42 and "42" are one


def catalog(personal: list[str] | None) -> Any:
    doc = demo()
    for metric in doc["metrics"]:
        if metric["code"] == "active_users":
            if personal is None:
                metric.pop("personal", None)
            else:
                metric["personal"] = personal
    return doc


@pytest.fixture
def world(clock, make_key):
    catalog_import(spec=catalog_validate(catalog(["user_ref"])))
    for name in ("acme", "globex"):
        tenant = tenant_upsert(external_id=name, name=name.title(), currency="USD")[0]
        subscription_create(tenant=tenant, plan_code="team", actor="test", at=datetime(2020, 1, 1, tzinfo=UTC))
    return make_key("service", scopes=["usage:write"], metrics=["active_users"])


def report(api, key, tenant: str, value: Any, n: int) -> Any:
    event = {
        "tenant": tenant,
        "metric": "active_users",
        "quantity": 1,
        "idempotency_key": f"{tenant}-{n}",
        "occurred_at": (NOW - timedelta(minutes=5)).isoformat(),
        "properties": {"user_ref": value},
    }
    return api.post(URL, event, format="json", **key.header)


def test_personal_values_are_stored_as_pseudonyms_and_still_count_people(api, world):
    for n, person in enumerate(PEOPLE):
        assert report(api, world, "acme", person, n).status_code == 201
    assert report(api, world, "acme", PEOPLE[0], 0).json()["status"] == "duplicate"  # a retry, as ever
    stored = [e.properties["user_ref"] for e in UsageEvent.objects.filter(tenant__external_id="acme")]
    assert all(v.startswith("psn_") for v in stored)
    acme = UsageEvent.objects.filter(tenant__external_id="acme").first().tenant  # type: ignore[union-attr]
    assert stored.count(pseudonym(tenant_id=acme.pk, key="user_ref", value="ann@example.test")) == 2
    metric = BillableMetric.objects.get(code="active_users")
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    assert usage_over(tenant_id=acme.pk, metric=metric, start=start, end=end) == 3  # ann, bob, 42
    usage_aggregate()
    assert usage_over(tenant_id=acme.pk, metric=metric, start=start, end=end) == 3  # rollups agree


def test_the_same_person_at_another_tenant_is_another_pseudonym(api, world):
    report(api, world, "acme", "ann@example.test", 1)
    report(api, world, "globex", "ann@example.test", 1)
    values = {e.tenant.external_id: e.properties["user_ref"] for e in UsageEvent.objects.select_related("tenant")}
    assert values["acme"] != values["globex"]


def test_the_value_is_nowhere_in_the_database_or_redis(api, world):
    for n, person in enumerate(PEOPLE):
        report(api, world, "acme", person, n)
    usage_aggregate()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM usage_usageevent) t "
            "UNION ALL SELECT string_agg(t::text, ' ') FROM usage_usageuniquevalue t"
        )
        dumped = " ".join(row[0] or "" for row in cursor.fetchall())
    client = get_redis()
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"set":
            dumped += " ".join(str(m) for m in client.smembers(key))
        elif kind == b"string":
            dumped += str(client.get(key))
    assert "example.test" not in dumped
    assert "psn_" in dumped  # what is kept instead


def test_a_key_is_personal_from_its_first_event_or_never(world):
    with pytest.raises(CatalogError, match="keys stay personal"):
        catalog_validate(catalog(None))
    doc = catalog(["user_ref"])
    for metric in doc["metrics"]:
        if metric["code"] == "ai_tokens":
            metric["personal"] = metric["properties"][:1]  # a key events already carry in clear
    with pytest.raises(CatalogError, match="keys already in use cannot become personal"):
        catalog_validate(doc)
    doc = catalog(["nobody"])
    with pytest.raises(CatalogError, match="must be one of the metric's properties"):
        catalog_validate(doc)


def test_the_catalog_document_says_which_keys_are_personal(world):
    spec = catalog_validate(catalog(["user_ref"]))
    metric = next(m for m in catalog_document(spec)["metrics"] if m["code"] == "active_users")
    assert metric["personal"] == ["user_ref"]
    assert "personal" not in json.dumps(next(m for m in catalog_document(spec)["metrics"] if m["code"] == "ai_tokens"))
