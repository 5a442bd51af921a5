from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Tenants and subscriptions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import audit, metrics_state, models  # noqa: F401  (metrics_state: what /metrics reads)

        auditlog.register(models.Subscription)
        # Personal data: every change is logged, but the log (append-only, kept for ever)
        # shows that the name or billing email changed, never their values.
        auditlog.register(models.Tenant, mask_fields=audit.PERSONAL_FIELDS, mask_callable=audit.MASK_CALLABLE)
        audit.connect()
