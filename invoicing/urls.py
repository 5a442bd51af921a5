from django.urls import path

from . import api

urlpatterns = [
    path("tenants/<str:tenant>/billing", api.BillingStateApi.as_view(), name="tenant-billing"),
    path("tenants/<str:tenant>/invoices", api.TenantInvoicesApi.as_view(), name="tenant-invoices"),
    path("tenants/<str:tenant>/checkout", api.CheckoutApi.as_view(), name="tenant-checkout"),
    path("tenants/<str:tenant>/invoices/upcoming", api.UpcomingInvoiceApi.as_view(), name="tenant-invoice-upcoming"),
    path("tenants/<str:tenant>/billing/summary", api.BillingSummaryApi.as_view(), name="tenant-billing-summary"),
    path("invoices/<str:number>/explanation", api.InvoiceExplanationApi.as_view(), name="invoice-explanation"),
    path("invoices/<str:number>/pdf", api.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path("credit-notes/<str:number>/pdf", api.CreditNotePdfApi.as_view(), name="credit-note-pdf"),
    path("invoices/<str:number>", api.InvoiceApi.as_view(), name="invoice"),
]
