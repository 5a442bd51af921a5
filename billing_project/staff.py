"""Staff groups and what each may do in the admin (ARCHITECTURE.md, Principals).

The groups are created by a migration; their permissions are declared here and
re-applied after every `migrate`, so models added by later apps are covered
as soon as they exist. Money-moving actions (credits, refunds, approvals) get
their own permissions in the apps that own them and are granted here by name.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

BILLING_APPS = ("plans", "subscriptions", "usage", "entitlements", "invoicing", "webhooks")

FINANCE = "finance"
FINANCE_APPROVER = "finance-approver"
AUDITOR = "auditor"
SUPPORT = "support"
GROUPS = (FINANCE, FINANCE_APPROVER, AUDITOR, SUPPORT)

# (app_label, codename pattern)
_READ_BILLING = [(app, "view_*") for app in BILLING_APPS]
_FINANCE = [
    *_READ_BILLING,
    ("plans", "add_*"),
    ("plans", "change_*"),
    ("plans", "publish_*"),
    ("subscriptions", "change_*"),
    ("subscriptions", "suspend_*"),
    ("subscriptions", "resume_*"),
    ("subscriptions", "cancel_*"),
    ("entitlements", "add_*"),
    ("entitlements", "change_*"),
    ("invoicing", "add_*"),
    ("invoicing", "grant_*"),
    ("invoicing", "issue_*"),
    ("invoicing", "refund_*"),
    ("invoicing", "propose_*"),
    ("webhooks", "reprocess_*"),
    ("billing_project", "view_taskfailure"),
    ("billing_project", "change_taskfailure"),
    ("billing_project", "view_workitem"),
    ("billing_project", "retry_workitem"),
    ("auditlog", "view_logentry"),
    ("approvals", "view_*"),
    ("console", "view_finance_overview"),  # the finance overview and its exports
    # the tenant page's money actions (console/actions.py); above the thresholds they ask for approval
    ("console", "grant_credit"),
    ("console", "refund_invoice"),
    ("console", "issue_credit_note"),
    ("console", "void_invoice"),
    ("console", "retry_payment"),
    ("console", "extend_trial"),
    ("console", "manage_grants"),
    ("console", "export_tenant_data"),  # GDPR access: the tenant's data as one document
]
ROLE_PERMISSIONS: dict[str, list[tuple[str, str]]] = {
    FINANCE: _FINANCE,
    # Approves what finance proposes above the configured amount (four eyes).
    # Approvals: finance sees the queue (it asks); only finance-approver decides (four eyes).
    FINANCE_APPROVER: [
        *_FINANCE,
        ("invoicing", "approve_*"),
        ("entitlements", "approve_*"),
        ("approvals", "approve_*"),
        ("console", "request_erasure"),  # GDPR erasure: asked by one approver, decided by another
        ("privacy", "view_erasure"),
    ],
    AUDITOR: [
        *_READ_BILLING,
        ("approvals", "view_*"),
        ("auditlog", "view_logentry"),
        ("billing_project", "view_*"),
        ("axes", "view_*"),
        ("djstripe", "view_*"),
        ("console", "view_finance_overview"),
        ("console", "export_tenant_data"),
        ("privacy", "view_erasure"),
    ],
    # Support sees tenants, subscriptions, usage and entitlements, and the billing view's
    # figures on the tenant page (usage and cost to date), never invoices, the ledger or refunds.
    SUPPORT: [
        ("plans", "view_*"),
        ("subscriptions", "view_*"),
        ("usage", "view_*"),
        ("entitlements", "view_*"),
    ],
}


def sync_staff_groups(sender: Any = None, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: make every group hold exactly its declared permissions."""
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

    # post_migrate fires once per app that has models; act after the last of those, when
    # every app's permissions have been created (an app without models gets no signal).
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if sender is not None and sender is not with_models[-1]:
        return

    perms = list(
        Permission.objects.using(using)
        .select_related("content_type")
        .values_list("pk", "content_type__app_label", "codename")
    )
    for name, rules in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        wanted = [
            pk
            for pk, app, codename in perms
            if any(app == rule_app and fnmatch(codename, pattern) for rule_app, pattern in rules)
        ]
        group.permissions.set(wanted)
