"""The admin site: the finance console, named for what it is, with a second factor at login
for staff who move money, and the daily work first.

dj-stripe registers some forty models; sorted by name they sat between the catalog and
invoicing. Our billing apps come first, in the order finance works through them, then the
staff and audit apps, and the Stripe mirror last, under a name that says it is Stripe's
data, read-only here (billing_project/admin_security.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

# Our apps in the order of daily work; anything not named keeps its place by name between
# them and the mirror.
FIRST = (
    "subscriptions",
    "invoicing",
    "approvals",
    "plans",
    "usage",
    "entitlements",
    "webhooks",
    "billing_project",
    "auditlog",
)
LAST = ("djstripe",)
STRIPE_MIRROR = "Stripe mirror (read-only)"
# Other apps' names where theirs says nothing to finance (set by BillingAdminConfig.ready).
APP_NAMES = {"djstripe": STRIPE_MIRROR, "otp_totp": "Staff second factor (TOTP)"}


def _rank(app: dict[str, Any]) -> tuple[int, int, str]:
    label = app["app_label"]
    if label in FIRST:
        return (0, FIRST.index(label), "")
    if label in LAST:
        return (2, LAST.index(label), "")
    return (1, 0, str(app["name"]).lower())


class BillingAdminSite(admin.AdminSite):
    site_header = "Billing — finance console"
    site_title = "Billing console"
    index_title = "Finance console"
    login_template = "admin/login_staff.html"  # username, password and the TOTP code

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # The second factor for staff who move money (billing_project/staff_otp.py). Imported
        # here, not at the top: staff_otp wraps a view with admin.site when it is imported,
        # and admin.site is this class.
        from .staff_otp import StaffLoginForm

        self.login_form = StaffLoginForm
        return super().login(request, extra_context)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        """The index's and the sidebar's apps: ours first, the Stripe mirror last."""
        return sorted(super().get_app_list(request, app_label), key=_rank)
