from django.urls import path

from . import api

urlpatterns = [
    path("tenants/<str:tenant>", api.TenantApi.as_view(), name="tenant"),
    path("tenants/<str:tenant>/subscription", api.SubscriptionCreateApi.as_view(), name="subscription-create"),
    path("tenants/<str:tenant>/subscription/change", api.SubscriptionChangeApi.as_view(), name="subscription-change"),
    path("tenants/<str:tenant>/subscription/cancel", api.SubscriptionCancelApi.as_view(), name="subscription-cancel"),
]
