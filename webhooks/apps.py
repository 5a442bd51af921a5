from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Stripe webhooks"
    default_auto_field = "django.db.models.BigAutoField"
