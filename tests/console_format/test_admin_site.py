"""The console's index and sidebar: our billing apps first, in the order of daily work,
dj-stripe's forty-odd models last under "Stripe mirror (read-only)"; the site keeps its name
and its login with a second factor (they moved from billing_project/admin.py into
billing_project/admin_site.py)."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin

from billing_project.admin_site import BillingAdminSite
from billing_project.staff_otp import StaffLoginForm

pytestmark = [pytest.mark.django_db]


def captions(html: str) -> list[str]:
    """The app sections in the order the page shows them."""
    return [re.sub(r"<[^>]+>", "", x).strip() for x in re.findall(r"<caption>(.*?)</caption>", html, re.S)]


def test_admin_site_is_the_consoles():
    assert admin.site.site_header == "Billing — finance console"
    assert isinstance(admin.site._wrapped, BillingAdminSite)  # type: ignore[attr-defined]  # a LazyObject
    assert admin.site.index_title == "Finance console"
    assert admin.site.login_template == "admin/login_staff.html"


def test_the_login_asks_for_the_second_factor(client):
    html = client.get("/admin/login/").content.decode()
    assert 'name="otp_token"' in html
    assert "Billing — finance console" in html
    assert isinstance(client.get("/admin/login/").context["form"], StaffLoginForm)


def test_billing_apps_first_and_the_stripe_mirror_last(admin_client):
    html = admin_client.get("/admin/").content.decode()
    index = html.split('id="content-main"')[1]  # the index, not the sidebar
    shown = [x for x in captions(index) if x != "Finance console"]
    assert shown[:2] == ["Tenants and subscriptions", "Invoicing"]
    ours = [i for i, name in enumerate(shown) if name.startswith(("Catalog", "Usage", "Entitlements", "Platform"))]
    theirs = [i for i, name in enumerate(shown) if name.startswith(("Authentication", "Axes", "Periodic"))]
    assert max(ours) < min(theirs)
    assert shown[-1] == "Stripe mirror (read-only)"
    assert "Djstripe" not in html


def test_the_sidebar_follows_the_same_order(admin_client, catalog):
    html = admin_client.get("/admin/plans/plan/").content.decode()
    sidebar = html.split('id="nav-sidebar"')[1].split("</nav>")[0]
    shown = captions(sidebar)
    assert shown[0] == "Tenants and subscriptions"
    assert shown[-1] == "Stripe mirror (read-only)"


def test_the_mirror_is_named_on_its_own_pages(admin_client):
    html = admin_client.get("/admin/djstripe/").content.decode()
    assert "Stripe mirror (read-only)" in html
    html = admin_client.get("/admin/djstripe/customer/").content.decode()
    assert "Stripe mirror (read-only)" in html  # the breadcrumbs
