from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "privacy"
    verbose_name = "Privacy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from approvals.kinds import kind_register

        from . import models
        from .kinds import ErasureKind

        kind_register(ErasureKind())
        auditlog.register(models.Erasure)  # holds counts and labels, never what it erased
