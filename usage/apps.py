from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import (  # noqa: F401
            backup_checks,  # registers what a restored copy must satisfy
            metrics_state,  # registers what /metrics reads of this app
        )
