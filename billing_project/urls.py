"""URL root: the composition point that mounts every app (exempt from layering)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import health, staff_otp

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("billing_project.api_urls")),
    path("admin/otp/enroll/", staff_otp.enrol, name="staff-otp-enrol"),
    path("admin/console/tenants/", include("console.tenant_urls")),  # a tenant's page and money actions
    path("admin/console/", include("console.urls")),  # the finance overview and exports
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
]

handler400 = "billing_project.api_errors.json_400"
handler404 = "billing_project.api_errors.json_404"
handler500 = "billing_project.api_errors.json_500"
