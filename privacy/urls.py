from django.urls import path

from . import api

urlpatterns = [
    path("tenants/<str:tenant>/privacy/export", api.PrivacyExportApi.as_view(), name="tenant-privacy-export"),
    path("tenants/<str:tenant>/privacy/erase", api.PrivacyEraseApi.as_view(), name="tenant-privacy-erase"),
]
