from django.apps import AppConfig


class BillingProjectConfig(AppConfig):
    name = "billing_project"
    verbose_name = "Platform: API keys and operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # The Celery app first, so that every shared_task binds to it.
        from . import api_schema, audit, celery, checks, login_throttle, staff, tasks  # noqa: F401  (registers app, models, tasks, signals)

        post_migrate.connect(staff.sync_staff_groups, dispatch_uid="billing_sync_staff_groups")

        # every app's admin is registered by now (django.contrib.admin autodiscovers first)
        from django.contrib import admin

        from .admin_security import secure_admin

        secure_admin(admin.site)
