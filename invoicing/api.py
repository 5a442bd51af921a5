"""Billing API: the tenant's billing view (more as invoicing lands)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer, StaticHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from billing_project.api import BillingAPIView, Text
from billing_project.errors import NotFound
from billing_project.scopes import BILLING_READ, PORTAL, SUBSCRIPTIONS_WRITE
from subscriptions.services import tenant_get

from .documents import invoice_document, invoice_html, invoice_summary
from .issuing import invoice_upcoming
from .models import CreditNote, IssuedDocument
from .payments import checkout_start
from .pdf import issued_pdf
from .selectors import (
    billing_summary,
    billing_view,
    credit_note_owner,
    invoice_by_number,
    invoice_explanation,
    invoice_owner,
    invoices_of,
)


class BillingStateApi(BillingAPIView):
    required_scopes = {"GET": (BILLING_READ,)}

    @extend_schema(
        operation_id="tenant_billing",
        tags=["tenants"],
        responses={
            200: inline_serializer(
                "BillingState",
                {
                    "tenant": serializers.CharField(),
                    "currency": serializers.CharField(),
                    "subscription": serializers.DictField(allow_null=True),
                    "usage": serializers.ListField(child=serializers.DictField()),
                    "cost_to_date": serializers.DictField(allow_null=True),
                    "credit_balance": serializers.CharField(allow_null=True),
                    "invoices": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def get(self, request: Request, tenant: str) -> Response:
        return Response(billing_view(tenant_get(tenant), now=timezone.now()))


class TenantInvoicesApi(BillingAPIView):
    required_scopes = {"GET": (BILLING_READ,)}

    @extend_schema(
        operation_id="tenant_invoices",
        tags=["invoices"],
        responses={
            200: inline_serializer(
                "Invoices",
                {"tenant": serializers.CharField(), "invoices": serializers.ListField(child=serializers.DictField())},
            )
        },
    )
    def get(self, request: Request, tenant: str) -> Response:
        owner = tenant_get(tenant)
        return Response({"tenant": owner.external_id, "invoices": [invoice_summary(i) for i in invoices_of(owner)]})


class InvoiceApi(BillingAPIView):
    """One finalized invoice: JSON, or the printable document with `Accept: text/html`
    (or `?format=html`); a paid invoice prints as a receipt."""

    required_scopes = {"GET": (BILLING_READ,)}
    renderer_classes = [JSONRenderer, StaticHTMLRenderer]

    def tenant_of_path(self, kwargs: Mapping[str, Any]) -> str | None:
        return invoice_owner(str(kwargs.get("number", "")))

    @extend_schema(
        operation_id="invoice",
        tags=["invoices"],
        responses={
            (200, "application/json"): inline_serializer(
                "Invoice",
                {
                    "number": serializers.CharField(),
                    "tenant": serializers.CharField(),
                    "status": serializers.ChoiceField(choices=["open", "paid", "void", "uncollectible"]),
                    "currency": serializers.CharField(),
                    "subtotal": serializers.CharField(),
                    "tax": serializers.CharField(),
                    "credit_applied": serializers.CharField(),
                    "total": serializers.CharField(),
                    "lines": serializers.ListField(child=serializers.DictField()),
                },
            ),
            (200, "text/html"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request, number: str) -> Response:
        invoice = invoice_by_number(number, document=True)
        if request.accepted_renderer.format == "html":
            return Response(invoice_html(invoice))
        return Response(invoice_document(invoice))


def pdf_response(document: IssuedDocument, filename: str) -> HttpResponse:
    """The stored bytes as issued, with their checksum (ETag and X-Checksum-SHA256). Bytes
    that no longer match it are an error, never served as the document."""
    content = bytes(document.content)
    if hashlib.sha256(content).hexdigest() != document.sha256:
        raise RuntimeError(f"issued document {document.pk} does not match its checksum")
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}.pdf"'
    response["ETag"] = f'"{document.sha256}"'
    response["X-Checksum-SHA256"] = document.sha256
    response["Cache-Control"] = "private, max-age=0"
    return response


class InvoicePdfApi(BillingAPIView):
    """GET /api/v1/invoices/{number}/pdf — the invoice's PDF as it was issued."""

    required_scopes = {"GET": (BILLING_READ,)}

    def tenant_of_path(self, kwargs: Mapping[str, Any]) -> str | None:
        return invoice_owner(str(kwargs.get("number", "")))

    @extend_schema(
        operation_id="invoice_pdf", tags=["invoices"], responses={(200, "application/pdf"): OpenApiTypes.BINARY}
    )
    def get(self, request: Request, number: str) -> HttpResponse:
        invoice = invoice_by_number(number, document=True)
        return pdf_response(issued_pdf(invoice=invoice), str(invoice.number))


class CreditNotePdfApi(BillingAPIView):
    """GET /api/v1/credit-notes/{number}/pdf — a credit note's PDF as it was issued."""

    required_scopes = {"GET": (BILLING_READ,)}

    def tenant_of_path(self, kwargs: Mapping[str, Any]) -> str | None:
        return credit_note_owner(str(kwargs.get("number", "")))

    @extend_schema(
        operation_id="credit_note_pdf", tags=["invoices"], responses={(200, "application/pdf"): OpenApiTypes.BINARY}
    )
    def get(self, request: Request, number: str) -> HttpResponse:
        note = CreditNote.objects.select_related("invoice").filter(number=number).first()
        if note is None:
            raise NotFound(f"No credit note {number!r}.")
        return pdf_response(issued_pdf(credit_note=note), note.number)


class BillingSummaryApi(BillingAPIView):
    """Where a tenant stands, in one structured answer an assistant can quote."""

    required_scopes = {"GET": (BILLING_READ,)}

    @extend_schema(
        operation_id="tenant_billing_summary",
        tags=["tenants"],
        responses={
            200: inline_serializer(
                "BillingSummary",
                {
                    "tenant": serializers.CharField(),
                    "name": serializers.CharField(),
                    "currency": serializers.CharField(),
                    "as_of": serializers.DateTimeField(),
                    "subscription": serializers.DictField(allow_null=True),
                    "usage": serializers.ListField(child=serializers.DictField()),
                    "limits": serializers.ListField(child=serializers.DictField()),
                    "cost_to_date": serializers.DictField(allow_null=True),
                    "credit_balance": serializers.CharField(allow_null=True),
                    "credit_balances": serializers.DictField(),
                    "open_invoices": serializers.ListField(child=serializers.DictField()),
                    "amount_due": serializers.DictField(),
                    "at_period_end": serializers.DictField(allow_null=True),
                },
            )
        },
    )
    def get(self, request: Request, tenant: str) -> Response:
        return Response(billing_summary(tenant_get(tenant), now=timezone.now()))


class UpcomingInvoiceApi(BillingAPIView):
    """The next invoice as it stands, by the same code as the period close: nothing written."""

    required_scopes = {"GET": (BILLING_READ,)}

    @extend_schema(
        operation_id="tenant_invoice_upcoming",
        tags=["invoices"],
        responses={
            200: inline_serializer(
                "UpcomingInvoice",
                {
                    "number": serializers.CharField(allow_null=True, help_text="None: not issued yet."),
                    "status": serializers.ChoiceField(choices=["upcoming"]),
                    "tenant": serializers.CharField(),
                    "currency": serializers.CharField(),
                    "as_of": serializers.DateTimeField(help_text="The period end it would be issued at."),
                    "subtotal": serializers.CharField(),
                    "credit_applied": serializers.CharField(),
                    "total": serializers.CharField(),
                    "lines": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
        description="404 `no_upcoming_invoice` when the tenant has no live subscription.",
    )
    def get(self, request: Request, tenant: str) -> Response:
        upcoming = invoice_upcoming(tenant=tenant_get(tenant))
        if upcoming is None:
            raise NotFound("This tenant has no live subscription: nothing is coming.", code="no_upcoming_invoice")
        return Response(upcoming)


class InvoiceExplanationApi(BillingAPIView):
    """How each line of an invoice was reached: what was measured, which price and tier,
    which events, and the arithmetic that adds up to the amount."""

    required_scopes = {"GET": (BILLING_READ,)}

    def tenant_of_path(self, kwargs: Mapping[str, Any]) -> str | None:
        return invoice_owner(str(kwargs.get("number", "")))

    @extend_schema(
        operation_id="invoice_explanation",
        tags=["invoices"],
        responses={
            200: inline_serializer(
                "InvoiceExplanation",
                {
                    "number": serializers.CharField(),
                    "tenant": serializers.CharField(),
                    "status": serializers.CharField(),
                    "currency": serializers.CharField(),
                    "period": serializers.DictField(),
                    "subtotal": serializers.CharField(),
                    "credit_applied": serializers.CharField(),
                    "tax": serializers.CharField(),
                    "total": serializers.CharField(),
                    "lines": serializers.ListField(child=serializers.DictField()),
                },
            )
        },
    )
    def get(self, request: Request, number: str) -> Response:
        return Response(invoice_explanation(invoice_by_number(number)))


class CheckoutIn(serializers.Serializer):  # type: ignore[type-arg]
    plan = Text()
    success_url = serializers.URLField(max_length=2000)
    cancel_url = serializers.URLField(max_length=2000)


class CheckoutApi(BillingAPIView):
    """A Stripe Checkout page for the tenant to leave a payment method; billing subscribes
    it to `plan` when Stripe reports the page completed."""

    required_scopes = {"POST": (SUBSCRIPTIONS_WRITE,)}
    alternative_scopes = {"POST": (PORTAL,)}  # a tenant user leaving a payment method
    error_statuses = {
        502: "`payment_provider_error`: Stripe refused the checkout session.",
        503: "`payment_provider_unavailable`: Stripe could not be reached; try again shortly "
        "(or `service_unavailable`).",
    }

    @extend_schema(
        operation_id="tenant_checkout",
        tags=["tenants"],
        request=CheckoutIn,
        responses={201: inline_serializer("Checkout", {"url": serializers.URLField()})},
    )
    def post(self, request: Request, tenant: str) -> Response:
        owner = tenant_get(tenant)
        data = CheckoutIn(data=request.data)
        data.is_valid(raise_exception=True)
        url = checkout_start(
            tenant=owner,
            plan_code=data.validated_data["plan"],
            success_url=data.validated_data["success_url"],
            cancel_url=data.validated_data["cancel_url"],
        )
        return Response({"url": url}, status=201)
