"""/api/v1/: each app contributes its routes as it lands (API.md)."""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
