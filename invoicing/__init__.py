"""Invoices, credits, refunds and the payment provider adapter (the only code that calls Stripe)."""
