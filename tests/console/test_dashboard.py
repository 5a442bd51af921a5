"""The finance overview page: who may open it (the matrix's VIEWS, walked as each group),
what it shows of the hand-built ledger, and that its charts are SVG drawn here (no script)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from billing_project.staff_matrix import NO_GROUP, ROLES, VIEWS
from console import urls as console_urls
from tests.conftest import verified_login

pytestmark = [pytest.mark.django_db]


def staff_client(role: str) -> Client:
    user = User.objects.create_user(f"staff-{role}".replace(" ", "-"), password="x" * 16, is_staff=True)
    if role != NO_GROUP:
        user.groups.add(Group.objects.get(name=role))
    client = Client()
    verified_login(client, User.objects.get(pk=user.pk))
    return client


def test_every_console_page_is_in_the_matrix():
    assert {f"console:{p.name}" for p in console_urls.urlpatterns} == set(VIEWS)


@pytest.mark.parametrize("role", ROLES)
def test_each_group_opens_exactly_the_pages_the_matrix_gives_it(at_t, role):
    client = staff_client(role)
    for name, groups in VIEWS.items():
        query = {"what": "invoices", "start": "2027-01-01", "end": "2027-01-31"} if name == "console:export" else {}
        status = client.get(reverse(name), query).status_code
        assert status == (200 if role in groups else 403), (name, role, status)


def test_finance_auditor_and_approver_may_open_it_support_and_no_group_may_not():
    assert set(VIEWS["console:dashboard"]) == {"finance", "finance-approver", "auditor"}
    assert set(VIEWS["console:export"]) == {"finance", "finance-approver", "auditor"}


def test_anonymous_visitors_are_sent_to_the_login(db):
    response = Client().get(reverse("console:dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_admin_index_links_to_it_for_those_who_may_open_it(db):
    finance = staff_client("finance").get(reverse("admin:index"))
    assert reverse("console:dashboard").encode() in finance.content
    support = staff_client("support").get(reverse("admin:index"))
    assert reverse("console:dashboard").encode() not in support.content


def test_the_page_shows_the_ledgers_figures_at_their_currencys_precision(ledger):
    response = staff_client("auditor").get(reverse("console:dashboard"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Finance overview" in html
    assert "January 2027" in html
    for text in (
        "181.33",  # MRR USD
        "2,176.00",  # ARR USD
        "1,530.00",  # invoiced USD
        "1,260.00",  # collected USD
        "346.00",  # outstanding USD
        "75,000",  # JPY, no decimals
        "90,000",  # ARR JPY
        "300.00",  # credit notes USD
        "110.00",  # credits granted USD
    ):
        assert text in html, text
    assert "1530.0000" not in html  # never the database's scale
    charts = html.count('<svg xmlns="http://www.w3.org/2000/svg" class="console-chart"')
    assert charts == 3 + 5  # revenue in 3 currencies, usage of 5 metrics
    assert "<script" not in html.split('<div id="content-main" class="console">', 1)[1]
    assert 'action="/admin/console/export/"' in html
    assert "Core Ltd" in html  # past due
    assert "Dusk Ltd" in html  # suspended


def test_the_page_holds_no_inline_script_under_the_admins_policy(ledger):
    response = staff_client("finance").get(reverse("console:dashboard"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'unsafe-inline'" not in policy
    inline = [m for m in re.findall(r"<script([^>]*)>", response.content.decode()) if "src=" not in m]
    assert inline == []
    assert "cdn" not in response.content.decode().lower()


def test_troubled_subscriptions_lead_to_their_tenants_whole_picture(ledger):
    html = staff_client("finance").get(reverse("console:dashboard")).content.decode()
    for code in ("core", "dusk"):  # past due, suspended
        assert f'href="{reverse("console-tenant:page", args=[ledger.tenants[code].pk])}"' in html, code
    assert f'action="{reverse("admin:subscriptions_tenant_changelist")}"' in html  # find a tenant
