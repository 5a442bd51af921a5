from django.urls import path

from . import api

urlpatterns = [
    path("tenants/<str:tenant>/privacy/export", api.PrivacyExportApi.as_view(), name="tenant-privacy-export"),
]
