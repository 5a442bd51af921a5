from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    verbose_name = "Approvals (four eyes)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import (
            checks,  # noqa: F401  (registers the settings checks)
            models,
        )

        # Every request and decision, with its actor (the requester, the approver, the task
        # that expired it): who asked, who decided, why, and what it did.
        auditlog.register(models.ApprovalRequest)
