from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class BillingProjectConfig(AppConfig):
    name = "billing_project"
    verbose_name = "Platform: API keys and operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        # The Celery app first, so that every shared_task binds to it.
        from . import api_schema, audit, celery, checks, login_throttle, metrics_state, staff, tasks  # noqa: F401  (registers app, models, tasks, signals, metrics)

        post_migrate.connect(staff.sync_staff_groups, dispatch_uid="billing_sync_staff_groups")

        # every app's admin is registered by now (django.contrib.admin autodiscovers first)
        from django.contrib import admin

        from .admin_security import secure_admin

        secure_admin(admin.site)


class BillingAdminConfig(AdminConfig):
    """django.contrib.admin with the finance console's site as `admin.site`
    (billing_project/admin_site.py): its name, its login, the daily work first."""

    default_site = "billing_project.admin_site.BillingAdminSite"

    def ready(self) -> None:
        super().ready()
        # The Stripe mirror's name (and the second factor's) wherever the admin prints an
        # app's name: index, sidebar, breadcrumbs, its own page. Set here rather than by
        # subclassing their AppConfigs: nothing outside invoicing.providers imports djstripe.
        from django.apps import apps

        from .admin_site import APP_NAMES

        for label, name in APP_NAMES.items():
            if label in apps.app_configs:
                apps.get_app_config(label).verbose_name = name
