from django.urls import path

from . import api

urlpatterns = [
    path("entitlements/check", api.EntitlementCheckApi.as_view(), name="entitlements-check"),
    path("entitlements/consume", api.EntitlementConsumeApi.as_view(), name="entitlements-consume"),
    path("tenants/<str:tenant>/entitlements", api.TenantEntitlementsApi.as_view(), name="tenant-entitlements"),
]
