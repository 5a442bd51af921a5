"""The console keeps no data of its own: it reads every app's selectors. This holds only the
permission to read the finance overview, on a model with no table."""

from __future__ import annotations

from django.db import models


class FinanceOverview(models.Model):
    """No table: the permission `console.view_finance_overview` (the finance overview page
    and its CSV exports) needs a model to belong to."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_finance_overview", "Can view the finance overview and export its CSVs")]
        verbose_name = "finance overview"

    def __str__(self) -> str:
        return "Finance overview"


class StaffAction(models.Model):
    """A money action a staff member submitted from the console (grant credit, refund,
    credit note, void…), once per form: the form's token is unique here, so the same
    submission sent ten times (a double click, a retried request) acts once and answers
    each time with what the first did. The action itself is audited by its own app."""

    token = models.CharField(max_length=64, unique=True, help_text="The form's one-time token.")
    kind = models.CharField(max_length=40)
    tenant = models.ForeignKey("subscriptions.Tenant", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    outcome = models.JSONField(default=dict, help_text="What the action did, or the approval it asked for.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        default_permissions = ()
        permissions = [
            ("grant_credit", "Can grant credit from the console"),
            ("refund_invoice", "Can refund paid invoices from the console"),
            ("issue_credit_note", "Can issue credit notes from the console"),
            ("void_invoice", "Can void open invoices and mark them uncollectible"),
            ("retry_payment", "Can retry an invoice's payment now"),
            ("extend_trial", "Can extend a tenant's trial"),
            ("manage_grants", "Can add and revoke entitlement grants from the console"),
            ("export_tenant_data", "Can download a tenant's data export (GDPR access)"),
            ("request_erasure", "Can ask for a tenant's erasure (GDPR; another approver decides)"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.user_id} ({self.token[:8]})"
