"""Privacy API (API.md, scope `privacy:admin`, service keys only): a tenant's data export."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request

from billing_project.api import BillingAPIView
from billing_project.scopes import PRIVACY_ADMIN
from subscriptions.api import actor
from subscriptions.services import tenant_get

from .export import export_download


class PrivacyExportApi(BillingAPIView):
    """GET /api/v1/tenants/{tenant}/privacy/export — everything we hold about the tenant, as
    one JSON document (schema `billing.privacy-export/1`, README), streamed."""

    required_scopes = {"GET": (PRIVACY_ADMIN,)}

    @extend_schema(operation_id="tenant_privacy_export", tags=["privacy"], responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, tenant: str) -> StreamingHttpResponse:
        return export_download(tenant_get(tenant), channel=f"api {actor(request)}", now=timezone.now())
