"""/api/v1/: each app contributes its routes as it lands (API.md)."""

from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    path("", include("entitlements.urls")),  # first: the entitlement check is the hottest route
    path("", include("plans.urls")),
    path("", include("subscriptions.urls")),
    path("", include("usage.urls")),
    path("", include("invoicing.urls")),
    path("", include("approvals.urls")),  # proposals: what an agent may ask for
    path("", include("privacy.urls")),  # GDPR access
]
