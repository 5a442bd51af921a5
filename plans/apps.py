from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Catalog: features, metrics, plans and their versions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from . import models

        # Every catalog change is recorded with the staff member who made it.
        for model in (
            models.BillableMetric,
            models.Feature,
            models.Plan,
            models.PlanVersion,
            models.Charge,
            models.ChargeTier,
            models.PlanEntitlement,
        ):
            auditlog.register(model)
