"""Importing and exporting the catalog against PostgreSQL: validated whole, idempotent,
versioned, lossless, and refused without a trace when broken."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from plans.catalog import CatalogError, catalog_document, dump_document, load_file
from plans.models import BillableMetric, Charge, Feature, Plan, PlanEntitlement, PlanVersion
from plans.selectors import catalog_spec
from plans.services import catalog_validate
from tests.plans.factories import DEMO, small, write

pytestmark = [pytest.mark.django_db]


def catalog(*args: str) -> str:
    out = io.StringIO()
    call_command("catalog", *args, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (BillableMetric, Feature, Plan, PlanVersion, Charge, PlanEntitlement))


def test_demo_catalog_imports_from_the_command_line():
    output = catalog("import", str(DEMO))
    assert "published plan pro v1" in output
    live = PlanVersion.objects.filter(status="published")
    assert sorted(v.plan.code for v in live) == ["enterprise", "free", "pro", "team"]
    pro = live.get(plan__code="pro")
    assert pro.version == 1
    assert str(pro.base_fee) == "49.0000000000"
    assert pro.trial_days == 14
    assert [c.model for c in pro.charges.order_by("position")] == [
        "graduated",
        "package",
        "per_unit",
        "per_unit",
    ]


def test_importing_the_same_file_twice_changes_nothing():
    catalog("import", str(DEMO))
    before = counts()
    output = catalog("import", str(DEMO))
    assert output.strip().endswith("no changes")
    assert counts() == before


def test_a_changed_plan_becomes_a_new_version_and_the_old_one_is_kept(tmp_path):
    catalog("import", str(write(tmp_path, small())))
    v1 = PlanVersion.objects.get(plan__code="pro")
    changed = small()
    changed["plans"][0]["base_fee"] = "59.00"
    output = catalog("import", str(write(tmp_path, changed)))
    assert "published plan pro v2" in output
    v1.refresh_from_db()
    v2 = PlanVersion.objects.get(plan__code="pro", status="published")
    assert (v1.status, v1.version, str(v1.base_fee)) == ("archived", 1, "49.0000000000")
    assert (v2.version, str(v2.base_fee)) == (2, "59.0000000000")
    # the old version still has every term a grandfathered subscription needs
    assert v1.charges.count() == 2
    assert v1.entitlements.count() == 3


def test_a_renamed_plan_is_not_a_new_version(tmp_path):
    catalog("import", str(write(tmp_path, small())))
    renamed = small()
    renamed["plans"][0]["name"] = "Professional"
    output = catalog("import", str(write(tmp_path, renamed)))
    assert "updated   plan pro (name)" in output
    assert PlanVersion.objects.filter(plan__code="pro").count() == 1
    assert Plan.objects.get(code="pro").name == "Professional"


def test_export_then_import_is_lossless(tmp_path):
    catalog("import", str(DEMO))
    first = catalog("export")
    (tmp_path / "exported.yaml").write_text(first)
    assert catalog("import", str(tmp_path / "exported.yaml")).strip().endswith("no changes")
    assert catalog("export") == first
    # and the exported document describes exactly what was imported
    assert catalog_document(catalog_validate(load_file(tmp_path / "exported.yaml"))) == catalog_document(catalog_spec())


def test_json_export_round_trips_too(tmp_path):
    catalog("import", str(DEMO))
    catalog("export", "--format", "json", "--output", str(tmp_path / "c.json"))
    assert catalog("import", str(tmp_path / "c.json")).strip().endswith("no changes")


def test_the_export_of_a_file_reimports_to_the_same_terms(tmp_path):
    spec = catalog_validate(load_file(DEMO))
    text = dump_document(catalog_document(spec))
    (tmp_path / "again.yaml").write_text(text)
    again = catalog_validate(load_file(tmp_path / "again.yaml"))
    assert [p.content_hash() for p in again.plans] == [p.content_hash() for p in spec.plans]


def test_a_broken_catalog_is_refused_whole_with_every_problem(tmp_path):
    catalog("import", str(DEMO))
    before = counts()
    broken = small()
    broken["plans"][0]["charges"][0]["package_size"] = "0"
    broken["plans"][0]["entitlements"].append({"feature": "missing"})
    broken["metrics"].append({"code": "new_metric", "name": "New", "aggregation": "sum"})  # valid on its own
    with pytest.raises(CommandError) as err:
        catalog("import", str(write(tmp_path, broken)))
    message = str(err.value)
    assert "2 problem(s), nothing imported" in message
    assert "plans[0].charges[0].package_size: must be positive" in message
    assert "plans[0].entitlements[3].feature: unknown feature 'missing'" in message
    assert counts() == before
    assert not BillableMetric.objects.filter(code="new_metric").exists()


def test_check_mode_writes_nothing(tmp_path):
    assert "valid (4 plans)" in catalog("import", "--check", str(DEMO))
    assert counts() == (0, 0, 0, 0, 0, 0)


def test_a_metric_in_use_cannot_change_what_it_measures(tmp_path):
    catalog("import", str(write(tmp_path, small())))
    doc = small()
    doc["metrics"][1]["aggregation"] = "max"
    doc["metrics"][1]["properties"] = []
    with pytest.raises(CatalogError) as err:
        catalog_validate(doc)
    problems = {p.path: p.message for p in err.value.problems}
    assert "cannot change while plans charge it (pro)" in problems["metrics[1].aggregation"]
    assert "keys cannot be removed (model)" in problems["metrics[1].properties"]


def test_a_later_file_may_reference_what_the_database_already_has(tmp_path):
    catalog("import", str(write(tmp_path, small())))
    doc = {
        "plans": [
            {
                "code": "lite",
                "name": "Lite",
                "charges": [{"metric": "tokens", "model": "per_unit", "unit_price": "0.00003"}],
                "entitlements": ["chat"],
            }
        ]
    }
    assert "published plan lite v1" in catalog("import", str(write(tmp_path, doc, "lite.yaml")))


def test_catalog_changes_are_audited_with_the_system_actor():
    from auditlog.models import LogEntry

    catalog("import", str(DEMO))
    entry = LogEntry.objects.get_for_object(Plan.objects.get(code="pro")).first()
    assert entry is not None
    assert entry.actor.username == "billing-system"


def test_a_metric_behind_a_published_limit_is_in_use_too(tmp_path):
    doc = small()
    doc["metrics"].append({"code": "seats", "name": "Seats", "aggregation": "sum"})
    doc["features"].append({"code": "seat_limit", "name": "Seats", "metric": "seats"})
    doc["plans"][0]["entitlements"].append({"feature": "seat_limit", "limit": "5"})
    catalog("import", str(write(tmp_path, doc)))
    doc["metrics"][2]["aggregation"] = "max"
    with pytest.raises(CatalogError, match="cannot change while plans charge it"):
        catalog_validate(doc)


def test_an_open_draft_is_reported_not_a_traceback(tmp_path):
    from plans.services import plan_version_copy_to_draft

    catalog("import", str(write(tmp_path, small())))
    plan_version_copy_to_draft(version=PlanVersion.objects.get(plan__code="pro"))
    changed = small()
    changed["plans"][0]["base_fee"] = "59.00"
    with pytest.raises(CommandError, match="unpublished draft; publish or delete it first; nothing imported"):
        catalog("import", str(write(tmp_path, changed)))
    assert PlanVersion.objects.filter(plan__code="pro", status="published").get().version == 1
