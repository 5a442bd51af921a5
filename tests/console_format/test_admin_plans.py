"""Plan versions' prices as finance reads them: money once published (24,000.00 USD,
0.000008 USD), the number as typed in a draft's inputs (24000, not 24000.0000000000), and
never E notation (a tier's label read `up to 500000000.000000 @ 0E-10`)."""

from __future__ import annotations

import re

import pytest

from plans.models import Charge, PlanVersion
from plans.services import plan_version_copy_to_draft

pytestmark = [pytest.mark.django_db]
RAW = re.compile(r"\d\.\d{4,}0\b|\dE-\d")


def test_a_published_version_shows_money(admin_client, catalog):
    version = PlanVersion.objects.get(plan__code="enterprise", status="published")
    html = admin_client.get(f"/admin/plans/planversion/{version.pk}/change/").content.decode()
    assert "24,000.00 USD" in html  # the base fee
    assert "6.00 USD" in html  # active users, per unit
    assert not RAW.search(html), RAW.search(html)

    tokens = Charge.objects.get(version=version, metric__code="ai_tokens")
    html = admin_client.get(f"/admin/plans/charge/{tokens.pk}/change/").content.decode()
    assert "0.000008 USD" in html
    assert "500.00 USD" in html
    assert "500,000,000" in html
    assert not RAW.search(html), RAW.search(html)


def test_the_plan_and_version_lists_show_money(admin_client, catalog):
    html = admin_client.get("/admin/plans/planversion/").content.decode()
    assert "24,000.00 USD" in html
    assert "49.00 USD" in html
    assert not RAW.search(html)
    plan = PlanVersion.objects.get(plan__code="enterprise", status="published").plan
    html = admin_client.get(f"/admin/plans/plan/{plan.pk}/change/").content.decode()
    assert "24,000.00 USD" in html
    assert not RAW.search(html)


def test_a_draft_edits_numbers_as_typed(admin_client, catalog):
    published = PlanVersion.objects.get(plan__code="enterprise", status="published")
    draft = plan_version_copy_to_draft(version=published)
    html = admin_client.get(f"/admin/plans/planversion/{draft.pk}/change/").content.decode()
    assert re.search(r'name="base_fee" value="24000"', html)
    assert re.search(r'name="charges-1-unit_price" value="6"', html)
    assert not RAW.search(html), RAW.search(html)
    tokens = Charge.objects.get(version=draft, metric__code="ai_tokens")
    html = admin_client.get(f"/admin/plans/charge/{tokens.pk}/change/").content.decode()
    assert re.search(r'name="tiers-1-unit_price" value="0.000008"', html)
    assert re.search(r'name="tiers-1-flat_fee" value="500"', html)
    assert not RAW.search(html), RAW.search(html)


def test_a_draft_saves_what_its_inputs_show(admin_client, catalog):
    published = PlanVersion.objects.get(plan__code="pro", status="published")
    draft = plan_version_copy_to_draft(version=published)
    page = admin_client.get(f"/admin/plans/planversion/{draft.pk}/change/").content.decode()
    data = dict(re.findall(r'<input type="(?:text|number|hidden)" name="([^"]+)" value="([^"]*)"', page))
    data.update(dict(re.findall(r'<select name="([^"]+)"[^>]*>.*?<option value="([^"]*)" selected', page, re.S)))
    data.update(dict.fromkeys(re.findall(r'<input type="checkbox" name="([^"]+)"[^>]*checked', page), "on"))
    data["base_fee"] = "59"
    response = admin_client.post(f"/admin/plans/planversion/{draft.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    draft.refresh_from_db()
    assert str(draft.base_fee.normalize()) == "59"
    assert [str(c.unit_price or c.package_price) for c in draft.charges.order_by("position")] == [
        str(c.unit_price or c.package_price) for c in published.charges.order_by("position")
    ]
