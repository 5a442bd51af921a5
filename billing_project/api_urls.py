"""/api/v1/: each app contributes its routes as it lands (API.md)."""

from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("plans.urls")),
    path("", include("subscriptions.urls")),
    path("", include("usage.urls")),
    path("", include("entitlements.urls")),
    path("", include("invoicing.urls")),
]
