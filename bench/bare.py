"""The baseline: a bare Django view (no middleware, no database, no Redis), served by
gunicorn exactly like the service. DJANGO_SETTINGS_MODULE=bench.bare; WSGI: bench.bare:application."""

from __future__ import annotations

import gc

from django.http import HttpRequest, JsonResponse
from django.urls import path

SECRET_KEY = "bench-baseline-not-a-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.bare"
USE_TZ = True
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"allowed": True, "reason": "ok"})


urlpatterns = [path("bare", bare)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
gc.freeze()  # as billing_project/wsgi.py does: the same process tuning on both sides
