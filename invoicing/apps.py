from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"
    verbose_name = "Invoicing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import (
            backup_checks,  # noqa: F401  (registers what a backup's manifest and restore check)
            checks,  # noqa: F401  (registers the settings checks)
            metrics_state,  # noqa: F401  (registers what /metrics reads of this app)
            models,
        )

        # Every change of money state, with its actor (a staff member, a key, `task:…`,
        # `stripe:evt_…`): invoices as they move from draft to paid, void or uncollectible,
        # every credit entry, credit note and refund (lines are part of what they belong to).
        for model in (models.CreditEntry, models.CreditNote):
            auditlog.register(model)
        # the buyer as printed holds the tenant's name and email: the invoice keeps it (until
        # retention ends), the audit log, kept for ever, records only that it was set
        auditlog.register(models.Invoice, mask_fields=["buyer"], mask_callable="subscriptions.audit.mask_personal_data")
        # a refund's every move (the submission lease is bookkeeping, not a decision)
        auditlog.register(models.Refund, exclude_fields=["submit_lease_until"])
