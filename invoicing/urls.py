from django.urls import path

from . import api

urlpatterns = [path("tenants/<str:tenant>/billing", api.BillingStateApi.as_view(), name="tenant-billing")]
