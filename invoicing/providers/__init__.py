"""The payment-provider adapter: the only package that imports `stripe` or `djstripe`
(an import-linter contract run by the tests enforces it).

Callers use these names only; they take our values and model instances and return the
plain dataclasses of `base`, raising `ProviderUnavailable` (retry) or `ProviderRejected`."""

from .base import (
    ProviderDeclined,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    PushedInvoice,
    RemoteCharge,
    RemoteCheckoutSession,
    RemoteInvoice,
    RemoteInvoicePayment,
    RemoteRefund,
)
from .stripe_adapter import (
    charge_fetch,
    checkout_session_create,
    checkout_session_fetch,
    customer_find,
    customer_for,
    customer_known,
    customer_mirror_pseudonymise,
    customer_pseudonymise,
    customers_mirrored,
    invoice_fetch,
    invoice_finalize_remote,
    invoice_pay,
    invoice_payments,
    invoice_push,
    refund_create,
    refund_fetch,
    refund_find,
    refunds_of_charge,
)

__all__ = [
    "ProviderDeclined",
    "ProviderError",
    "ProviderRejected",
    "ProviderUnavailable",
    "PushedInvoice",
    "RemoteCharge",
    "RemoteCheckoutSession",
    "RemoteInvoice",
    "RemoteInvoicePayment",
    "RemoteRefund",
    "charge_fetch",
    "checkout_session_create",
    "checkout_session_fetch",
    "customer_find",
    "customer_for",
    "customer_known",
    "customer_mirror_pseudonymise",
    "customer_pseudonymise",
    "customers_mirrored",
    "invoice_fetch",
    "invoice_finalize_remote",
    "invoice_pay",
    "invoice_payments",
    "invoice_push",
    "refund_create",
    "refund_fetch",
    "refund_find",
    "refunds_of_charge",
]
