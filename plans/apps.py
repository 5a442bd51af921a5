from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Catalog: features, metrics, plans and their versions"
    default_auto_field = "django.db.models.BigAutoField"
