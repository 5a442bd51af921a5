"""The tenant page and its actions, mounted at /admin/console/tenants/ by billing_project/urls.py."""

from django.urls import path

from . import tenant_views

app_name = "console-tenant"

urlpatterns = [
    path("<int:tenant_id>/", tenant_views.page, name="page"),
    path("<int:tenant_id>/privacy-export/", tenant_views.privacy_export, name="privacy-export"),
    path("<int:tenant_id>/<str:code>/", tenant_views.act, name="act"),
]
