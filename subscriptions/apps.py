from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Tenants and subscriptions"
    default_auto_field = "django.db.models.BigAutoField"
