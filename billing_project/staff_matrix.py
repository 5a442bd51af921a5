"""What each staff group may see and do in the admin, declared once: the permission matrix.

`billing_project/staff.py` grants permissions to the groups; this is what those grants must
come to, page by page and action by action. tests/security/test_admin_matrix.py walks every
admin page and action of every installed app (ours, dj-stripe's, axes's, auditlog's,
celery beat's) as each group and as a staff member in no group, and compares. A model or an
action that is not declared here fails that test: adding one means deciding who may use it.

Letters: v view, a add, c change, d delete. A group not named may do nothing.
Superusers may do everything and are not in the matrix.
"""

from __future__ import annotations

from fnmatch import fnmatch

from .staff import AUDITOR, FINANCE, FINANCE_APPROVER, SUPPORT

NO_GROUP = "(no group)"
ROLES = (FINANCE, FINANCE_APPROVER, AUDITOR, SUPPORT, NO_GROUP)

_FINANCE_TEAM = (FINANCE, FINANCE_APPROVER)


def _all(letters: str, *, groups: tuple[str, ...] = (FINANCE, FINANCE_APPROVER, AUDITOR, SUPPORT)) -> dict[str, str]:
    return dict.fromkeys(groups, letters)


def _finance(letters: str, *, auditor: str = "v", support: str = "") -> dict[str, str]:
    found = dict.fromkeys(_FINANCE_TEAM, letters) | {AUDITOR: auditor}
    return found | ({SUPPORT: support} if support else {})


# model label (or a pattern of labels) → group → letters
PAGES: dict[str, dict[str, str]] = {
    # the catalog: finance edits it (versions are published, never deleted)
    "plans.BillableMetric": _finance("vac", support="v"),
    "plans.Feature": _finance("vac", support="v"),
    "plans.Plan": _finance("vac", support="v"),
    "plans.PlanVersion": _finance("vac", support="v"),
    "plans.Charge": _finance("vac", support="v"),
    # customers
    "subscriptions.Tenant": _finance("vc", support="v"),
    "subscriptions.Subscription": _finance("v", support="v"),
    "subscriptions.ProrationItem": _finance("v", support="v"),
    "entitlements.Grant": _finance("vac", support="v"),
    "entitlements.ReconciliationRun": _all("v"),
    "usage.UsageEvent": _all("v"),
    "usage.UsageRollup": _all("v"),
    "usage.AggregationWatermark": _all("v"),
    "usage.DetachedUsagePartition": _all("v"),
    # money: read here, changed through the actions and services only
    "invoicing.Invoice": _finance("v"),  # support: the billing view's figures only (tenant page)
    "invoicing.CreditEntry": _finance("v"),
    "invoicing.CreditNote": _finance("v"),
    "invoicing.Refund": _finance("v"),  # requested and followed through the services (admin actions)
    "webhooks.StripeEvent": _finance("v"),
    # four eyes: the queue is read by finance and auditors, decided through the actions only
    "approvals.ApprovalRequest": _finance("v"),
    # erasures: recorded without what they erased; read by those who decide them and audit
    "privacy.Erasure": {FINANCE_APPROVER: "v", AUDITOR: "v"},
    # operations
    "billing_project.TaskFailure": _finance("vc"),
    "billing_project.WorkItem": _finance("v"),
    "billing_project.ApiKey": {AUDITOR: "v"},  # keys are the superusers'
    "billing_project.ChainLink": {AUDITOR: "v"},  # the audit chain: auditors read it
    "billing_project.ChainHead": {AUDITOR: "v"},
    "auditlog.LogEntry": _finance("v"),
    "axes.AccessAttempt": {AUDITOR: "v"},
    "axes.AccessLog": {AUDITOR: "v"},
    "axes.AccessFailureLog": {AUDITOR: "v"},
    # the Stripe mirror: read-only to auditors, nothing to anyone else
    "djstripe.*": {AUDITOR: "v"},
    # superusers only
    "auth.User": {},
    "auth.Group": {},
    "django_celery_beat.*": {},
    "otp_totp.TOTPDevice": {},  # staff enrol their own at /admin/otp/enroll/; superusers manage devices
}

# (model label, action) → the groups that may run it
ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("plans.PlanVersion", "publish"): _FINANCE_TEAM,
    ("plans.PlanVersion", "archive"): _FINANCE_TEAM,
    ("plans.PlanVersion", "copy_to_draft"): _FINANCE_TEAM,
    ("subscriptions.Subscription", "suspend"): _FINANCE_TEAM,
    ("subscriptions.Subscription", "resume"): _FINANCE_TEAM,
    ("subscriptions.Subscription", "cancel_now"): _FINANCE_TEAM,
    ("entitlements.Grant", "revoke"): _FINANCE_TEAM,
    ("webhooks.StripeEvent", "reprocess"): _FINANCE_TEAM,
    ("approvals.ApprovalRequest", "approve"): (FINANCE_APPROVER,),
    ("approvals.ApprovalRequest", "reject"): (FINANCE_APPROVER,),
    ("billing_project.TaskFailure", "mark_resolved"): _FINANCE_TEAM,
    ("billing_project.WorkItem", "retry"): _FINANCE_TEAM,
    ("billing_project.ApiKey", "revoke_keys"): (),
    ("axes.AccessAttempt", "cleanup_expired_attempts"): (),
    ("django_celery_beat.PeriodicTask", "enable_tasks"): (),
    ("django_celery_beat.PeriodicTask", "disable_tasks"): (),
    ("django_celery_beat.PeriodicTask", "toggle_tasks"): (),
    ("django_celery_beat.PeriodicTask", "run_tasks"): (),
}

# (model label, admin URL name suffix) → the groups that may open it: every page a model's
# admin adds beyond Django's list, add, change, delete and history
EXTRA_PAGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("invoicing.Invoice", "document"): (FINANCE, FINANCE_APPROVER, AUDITOR),
}

# admin pages that belong to no model admin (URL name) → the groups that may open them;
# tests/console walks them as each group
VIEWS: dict[str, tuple[str, ...]] = {
    "console:dashboard": (FINANCE, FINANCE_APPROVER, AUDITOR),  # the finance overview
    "console:export": (FINANCE, FINANCE_APPROVER, AUDITOR),  # its CSV exports
    "console:reconciliation": (FINANCE, FINANCE_APPROVER, AUDITOR),  # a day's reconciliation with Stripe
    "console:reconciliation_csv": (FINANCE, FINANCE_APPROVER, AUDITOR),  # and its CSV
}

# the tenant page (console/tenant_views.py) and each of its actions → the groups that may use
# them; tests/console/test_tenant_page.py walks them as each group
TENANT_PAGE: tuple[str, ...] = (FINANCE, FINANCE_APPROVER, AUDITOR, SUPPORT)
TENANT_ACTIONS: dict[str, tuple[str, ...]] = dict.fromkeys(
    ("credit", "refund", "credit_note", "void", "uncollectible", "retry", "extend_trial", "add_grant", "revoke_grant"),
    _FINANCE_TEAM,
) | {"erase": (FINANCE_APPROVER,)}  # GDPR erasure: asked by one finance-approver, approved by another


def page_rights(label: str) -> dict[str, str] | None:
    """The declared letters per group for a model, or None when it is not declared."""
    if label in PAGES:
        return PAGES[label]
    for pattern, rights in PAGES.items():
        if "*" in pattern and fnmatch(label, pattern):
            return rights
    return None
